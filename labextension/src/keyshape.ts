/**
 * A small shape check for pasted text: does it look like an API key? The browser only offers to
 * store it as a secret; the kernel and the server decide with the real engine (rules.toml).
 */

/** Known provider prefixes and the environment variable each key conventionally lives under. */
const PREFIXES: Array<[RegExp, string]> = [
  [/^sk-ant-[A-Za-z0-9_-]{20,}$/, 'ANTHROPIC_API_KEY'],
  [/^sk-(proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}$/, 'OPENAI_API_KEY'],
  [/^gh[pousr]_[A-Za-z0-9]{36,}$/, 'GITHUB_TOKEN'],
  [/^github_pat_[A-Za-z0-9_]{50,}$/, 'GITHUB_TOKEN'],
  [/^hf_[A-Za-z0-9]{30,}$/, 'HF_TOKEN'],
  [/^(AKIA|ASIA)[A-Z0-9]{16}$/, 'AWS_ACCESS_KEY_ID'],
  [/^AIza[A-Za-z0-9_-]{35}$/, 'GOOGLE_API_KEY'],
  [/^xox[abposr]-[A-Za-z0-9-]{10,}$/, 'SLACK_TOKEN'],
  [/^glpat-[A-Za-z0-9_-]{20,}$/, 'GITLAB_TOKEN'],
  [/^npm_[A-Za-z0-9]{36}$/, 'NPM_TOKEN'],
  [/^pypi-[A-Za-z0-9_-]{50,}$/, 'PYPI_TOKEN'],
  [/^(sk|rk)_live_[A-Za-z0-9]{20,}$/, 'STRIPE_API_KEY'],
  [/^gsk_[A-Za-z0-9]{40,}$/, 'GROQ_API_KEY'],
  [/^r8_[A-Za-z0-9]{30,}$/, 'REPLICATE_API_TOKEN']
];

/** Placeholders people paste from documentation: never offered as secrets. */
const PLACEHOLDER_RE = /(your|example|placeholder|xxxx|\.\.\.|<|>|\*{3})/i;

/** Shannon entropy in bits per character. */
export function entropy(text: string): number {
  if (!text) {
    return 0;
  }
  const counts = new Map<string, number>();
  for (const ch of text) {
    counts.set(ch, (counts.get(ch) ?? 0) + 1);
  }
  let bits = 0;
  for (const count of counts.values()) {
    const p = count / text.length;
    bits -= p * Math.log2(p);
  }
  return bits;
}

/** What the shape check concluded about a pasted text. */
export interface IKeyShape {
  /** The variable name to suggest (the provider's convention, else API_KEY). */
  name: string;
  /** The pasted text without surrounding whitespace or quotes: the value to store. */
  value: string;
}

/**
 * Does `pasted` look like one API key (and nothing else)?
 *
 * A known provider prefix, or a single token of 32 to 512 characters from the base64/hex
 * alphabets that mixes letters and digits with high entropy. Multi-line text, code and
 * placeholders are not keys.
 *
 * @returns the suggested name and the value, or `null`.
 */
export function keyShape(pasted: string): IKeyShape | null {
  let value = pasted.trim();
  const quoted = /^(['"])(.*)\1$/.exec(value);
  if (quoted) {
    value = quoted[2];
  }
  if (!value || /\s/.test(value) || value.length > 512 || PLACEHOLDER_RE.test(value)) {
    return null;
  }
  for (const [pattern, name] of PREFIXES) {
    if (pattern.test(value)) {
      return { name, value };
    }
  }
  if (
    value.length >= 32 &&
    /^[A-Za-z0-9_\-+/=.]+$/.test(value) &&
    /[0-9]/.test(value) &&
    /[A-Za-z]/.test(value) &&
    entropy(value) >= 4.0
  ) {
    return { name: 'API_KEY', value };
  }
  return null;
}

/** The longest paste the page sends to the server for a check (the server's own limit). */
export const MAX_PASTE_CHARS = 1024 * 1024;

/** A run of key characters long enough to be a key. */
const TOKEN_RE = /[A-Za-z0-9_\-+/=.]{20,}/g;

/**
 * Might `pasted` (a snippet, not one bare key) hold a key somewhere? A cheap first look, so
 * that an ordinary paste is not sent to the server: a known provider prefix or a private-key
 * header anywhere, or a token of 20+ key characters that mixes letters and digits with high
 * entropy. The server decides with the real engine; a wrong "maybe" (a long URL, say) costs one
 * request to it before the paste lands.
 */
export function mayHoldKey(pasted: string): boolean {
  if (!pasted || pasted.length > MAX_PASTE_CHARS) {
    return false;
  }
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pasted)) {
    return true;
  }
  for (const token of pasted.match(TOKEN_RE) ?? []) {
    for (const [pattern] of PREFIXES) {
      if (pattern.test(token)) {
        return true;
      }
    }
    if (/[0-9]/.test(token) && /[A-Za-z]/.test(token) && entropy(token) >= 3.5) {
      return true;
    }
  }
  return false;
}
