import { entropy, keyShape, MAX_PASTE_CHARS, mayHoldKey } from '../keyshape';

/** A random string from `alphabet`, made at run time (no key is written in the test). */
function random(length: number, alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'): string {
  let out = '';
  for (let i = 0; i < length; i++) {
    out += alphabet[Math.floor(Math.random() * alphabet.length)];
  }
  return out;
}

describe('keyShape', () => {
  it('recognises provider prefixes and suggests the conventional name', () => {
    expect(keyShape('sk-proj-' + random(48))?.name).toBe('OPENAI_API_KEY');
    expect(keyShape('sk-ant-api03-' + random(80))?.name).toBe('ANTHROPIC_API_KEY');
    expect(keyShape('ghp_' + random(36))?.name).toBe('GITHUB_TOKEN');
    expect(keyShape('hf_' + random(34))?.name).toBe('HF_TOKEN');
  });

  it('strips surrounding whitespace and quotes from the value to store', () => {
    const key = 'ghp_' + random(36);
    expect(keyShape(`  "${key}"\n`)).toEqual({ name: 'GITHUB_TOKEN', value: key });
  });

  it('offers a generic API_KEY for a long random token', () => {
    expect(keyShape(random(40))?.name).toBe('API_KEY');
  });

  it('leaves code, prose, placeholders and short or low-entropy text alone', () => {
    expect(keyShape('client = OpenAI(api_key=key)')).toBeNull();
    expect(keyShape('hello world')).toBeNull();
    expect(keyShape('sk-...')).toBeNull();
    expect(keyShape('YOUR_API_KEY_HERE_' + 'x'.repeat(30))).toBeNull();
    expect(keyShape('a'.repeat(64))).toBeNull();
    expect(keyShape('abc123')).toBeNull();
    expect(keyShape('line one\n' + random(40))).toBeNull();
    expect(keyShape('')).toBeNull();
  });

  it('measures entropy in bits per character', () => {
    expect(entropy('aaaa')).toBe(0);
    expect(entropy('abcd')).toBeCloseTo(2);
  });
});

describe('mayHoldKey', () => {
  it('sees a key anywhere in pasted code: a provider prefix, a private-key header, a random token', () => {
    expect(mayHoldKey(`client = OpenAI(api_key="sk-proj-${random(48)}")\nprint(client)`)).toBe(true);
    expect(mayHoldKey(`headers = {"Authorization": "token ghp_${random(36)}"}`)).toBe(true);
    expect(mayHoldKey('pem = """-----BEGIN RSA PRIVATE KEY-----\nMIIE...')).toBe(true);
    expect(mayHoldKey(`service_token = '${random(32)}'`)).toBe(true);
  });

  it('lets ordinary code, long identifiers and oversized pastes through without a server round trip', () => {
    expect(mayHoldKey('import numpy as np\nX_train, X_test = train_test_split(X, test_size=0.2)')).toBe(false);
    expect(mayHoldKey('model = AutoModelForSequenceClassification.from_pretrained(name)')).toBe(false);
    expect(mayHoldKey('df = pd.read_csv("data/train_features_final.csv")')).toBe(false);
    expect(mayHoldKey('')).toBe(false);
    expect(mayHoldKey(`x = "sk-proj-${random(48)}"` + ' '.repeat(MAX_PASTE_CHARS))).toBe(false);
  });
});
