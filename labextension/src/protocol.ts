/**
 * The messages between this extension, the kernel guard (comm target `ipykeyguard`) and the
 * server's secrets API. Pure functions only, so they are unit-tested without JupyterLab.
 *
 * No message in either direction carries a secret value, with one exception: the body of the
 * PUT request that stores a secret, which goes to the server once and is never sent back.
 */

/** The comm target the kernel guard registers (ipykeyguard/kernel/comm.py). */
export const COMM_TARGET = 'ipykeyguard';

/** Environment variable names the server accepts (identifier-like, at most 256 characters). */
const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,255}$/;

/** Sent by the kernel when its guard is loaded (on comm open and on `%load_ext`). */
export interface IHelloEvent {
  event: 'hello';
  store: string;
  mode: string;
  names: string[];
}

/** Sent by the kernel after a cell whose keys it moved into the store. */
export interface IMovedEvent {
  event: 'moved';
  cell_id: string | null;
  text: string;
  names: string[];
  store: string;
}

/** Sent by the kernel after it re-read the store (answer to a `reload`/`forget` action). */
export interface IReloadedEvent {
  event: 'reloaded';
  names: string[];
}

export type KernelEvent = IHelloEvent | IMovedEvent | IReloadedEvent;

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every(v => typeof v === 'string');
}

/**
 * Read a comm message's data as a kernel event.
 *
 * @returns the event, or `null` when the data is not one this version understands (a newer
 *   or older kernel side: ignored rather than trusted).
 */
export function parseKernelEvent(data: unknown): KernelEvent | null {
  if (typeof data !== 'object' || data === null) {
    return null;
  }
  const d = data as Record<string, unknown>;
  switch (d.event) {
    case 'hello':
      if (typeof d.store === 'string' && typeof d.mode === 'string' && isStringArray(d.names)) {
        return { event: 'hello', store: d.store, mode: d.mode, names: d.names };
      }
      return null;
    case 'moved':
      if (
        typeof d.text === 'string' &&
        isStringArray(d.names) &&
        typeof d.store === 'string' &&
        (typeof d.cell_id === 'string' || d.cell_id === null || d.cell_id === undefined)
      ) {
        return {
          event: 'moved',
          cell_id: typeof d.cell_id === 'string' ? d.cell_id : null,
          text: d.text,
          names: d.names,
          store: d.store
        };
      }
      return null;
    case 'reloaded':
      if (isStringArray(d.names)) {
        return { event: 'reloaded', names: d.names };
      }
      return null;
    default:
      return null;
  }
}

/** The notification text for a moved event: "moved 1 key (OPENAI_API_KEY) to .env". */
export function movedNotice(names: string[], store: string): string {
  const n = names.length;
  return `moved ${n} key${n === 1 ? '' : 's'} (${names.join(', ')}) to ${store}`;
}

/** True when `name` can be an environment variable name the server accepts. */
export function isValidName(name: string): boolean {
  return NAME_RE.test(name);
}

/** The code that reads a stored secret: `os.environ["NAME"]`. */
export function envSnippet(name: string): string {
  if (!isValidName(name)) {
    throw new Error(`not a valid environment variable name: ${JSON.stringify(name)}`);
  }
  return `os.environ["${name}"]`;
}

/** One stored secret as the server lists it: a name and where and when it came from. */
export interface ISecretEntry {
  name: string;
  source: string;
  updated: string | null;
}

/** The server's answer to `GET /ipykeyguard/secrets`. */
export interface ISecretList {
  store: string;
  kind: string;
  secrets: ISecretEntry[];
}

/**
 * Read the server's secret list, keeping only the fields the panel shows (names, sources,
 * times). Anything else the server might send is dropped, so a value could never be rendered.
 *
 * @throws Error when the reply does not have the expected shape.
 */
export function parseSecretList(data: unknown): ISecretList {
  if (typeof data !== 'object' || data === null) {
    throw new Error('the secrets reply is not an object');
  }
  const d = data as Record<string, unknown>;
  if (typeof d.store !== 'string' || typeof d.kind !== 'string' || !Array.isArray(d.secrets)) {
    throw new Error('the secrets reply lacks store, kind or secrets');
  }
  const secrets: ISecretEntry[] = [];
  for (const item of d.secrets) {
    if (typeof item !== 'object' || item === null) {
      continue;
    }
    const s = item as Record<string, unknown>;
    if (typeof s.name !== 'string' || !isValidName(s.name)) {
      continue;
    }
    secrets.push({
      name: s.name,
      source: typeof s.source === 'string' ? s.source : '',
      updated: typeof s.updated === 'string' ? s.updated : null
    });
  }
  return { store: d.store, kind: d.kind, secrets };
}

/** The server's answer to a paste check or store (`POST /ipykeyguard/paste`). */
export interface IPasteReply {
  /** The names the pasted keys take (or took) in the store. */
  names: string[];
  /** With store: the pasted text rewritten to read them (no key in it). */
  text: string | null;
  /** With store: the cell needs `import os` at its top. */
  importOs: boolean;
}

/**
 * Read the paste endpoint's reply; names that are not variable names are dropped.
 *
 * @throws Error when the reply does not have the expected shape.
 */
export function parsePasteReply(data: unknown): IPasteReply {
  if (typeof data !== 'object' || data === null) {
    throw new Error('the paste reply is not an object');
  }
  const d = data as Record<string, unknown>;
  if (!isStringArray(d.names)) {
    throw new Error('the paste reply lacks names');
  }
  return {
    names: d.names.filter(isValidName),
    text: typeof d.text === 'string' ? d.text : null,
    importOs: d.import_os === true
  };
}

/** True when `source` imports `os` on a line of its own (`import os`, `import sys, os`, ...). */
export function importsOs(source: string): boolean {
  return /^[ \t]*import[ \t]+([A-Za-z0-9_.]+[ \t]*,[ \t]*)*os\b/m.test(source);
}
