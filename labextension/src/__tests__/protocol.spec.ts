import {
  envSnippet,
  importsOs,
  isValidName,
  movedNotice,
  parseKernelEvent,
  parsePasteReply,
  parseSecretList
} from '../protocol';

describe('parseKernelEvent', () => {
  it('reads a moved event with the cell id, text, names and store', () => {
    const event = parseKernelEvent({
      event: 'moved',
      cell_id: 'abc',
      text: 'k = os.environ["OPENAI_API_KEY"]\n',
      names: ['OPENAI_API_KEY'],
      store: '.env'
    });
    expect(event).toEqual({
      event: 'moved',
      cell_id: 'abc',
      text: 'k = os.environ["OPENAI_API_KEY"]\n',
      names: ['OPENAI_API_KEY'],
      store: '.env'
    });
  });

  it('treats a missing cell id as null (the frontend then applies nothing)', () => {
    const event = parseKernelEvent({ event: 'moved', text: 'x', names: [], store: '.env' });
    expect(event && event.event === 'moved' && event.cell_id).toBeNull();
  });

  it('ignores data of the wrong shape or an unknown event', () => {
    expect(parseKernelEvent(null)).toBeNull();
    expect(parseKernelEvent('moved')).toBeNull();
    expect(parseKernelEvent({ event: 'moved', text: 1, names: [], store: '.env' })).toBeNull();
    expect(parseKernelEvent({ event: 'moved', text: 'x', names: [1], store: '.env' })).toBeNull();
    expect(parseKernelEvent({ event: 'value', value: 'x' })).toBeNull();
  });

  it('reads hello and reloaded events', () => {
    expect(parseKernelEvent({ event: 'hello', store: '.env', mode: 'rewrite', names: ['A'] })).toEqual({
      event: 'hello',
      store: '.env',
      mode: 'rewrite',
      names: ['A']
    });
    expect(parseKernelEvent({ event: 'reloaded', names: [] })).toEqual({ event: 'reloaded', names: [] });
  });
});

describe('movedNotice', () => {
  it('says how many keys moved, their names and where, in one line', () => {
    expect(movedNotice(['OPENAI_API_KEY'], '.env')).toBe('moved 1 key (OPENAI_API_KEY) to .env');
    expect(movedNotice(['A', 'B'], 'the keyring')).toBe('moved 2 keys (A, B) to the keyring');
  });
});

describe('names and snippets', () => {
  it('accepts identifier-like names only', () => {
    expect(isValidName('OPENAI_API_KEY')).toBe(true);
    expect(isValidName('_x1')).toBe(true);
    expect(isValidName('1ABC')).toBe(false);
    expect(isValidName('A-B')).toBe(false);
    expect(isValidName('A"]; import os #')).toBe(false);
    expect(isValidName('')).toBe(false);
    expect(isValidName('A'.repeat(257))).toBe(false);
  });

  it('builds the os.environ lookup and refuses a name that could inject code', () => {
    expect(envSnippet('HF_TOKEN')).toBe('os.environ["HF_TOKEN"]');
    expect(() => envSnippet('X"] + open("/etc/passwd").read() + os.environ["Y')).toThrow();
  });
});

describe('parseSecretList', () => {
  it('keeps names, sources and times and drops every other field', () => {
    const list = parseSecretList({
      store: '.env (/w/.env)',
      kind: 'dotenv',
      secrets: [
        { name: 'A', source: 'secrets panel', updated: '2026-01-01T00:00:00Z', value: 'should-not-survive' },
        { name: 'bad name', source: 'x' },
        'junk'
      ]
    });
    expect(list.secrets).toEqual([{ name: 'A', source: 'secrets panel', updated: '2026-01-01T00:00:00Z' }]);
    expect(JSON.stringify(list)).not.toContain('should-not-survive');
  });

  it('rejects a reply without the expected fields', () => {
    expect(() => parseSecretList({ secrets: [] })).toThrow();
    expect(() => parseSecretList(null)).toThrow();
  });
});

describe('parsePasteReply', () => {
  it('keeps names, the rewritten text and the import flag', () => {
    expect(parsePasteReply({ names: ['OPENAI_API_KEY'], text: 'k = os.environ["OPENAI_API_KEY"]', import_os: true })).toEqual({
      names: ['OPENAI_API_KEY'],
      text: 'k = os.environ["OPENAI_API_KEY"]',
      importOs: true
    });
    expect(parsePasteReply({ names: [] })).toEqual({ names: [], text: null, importOs: false });
  });

  it('drops names that are not variable names and refuses other shapes', () => {
    expect(parsePasteReply({ names: ['OK_NAME', 'not a name', '1BAD'] }).names).toEqual(['OK_NAME']);
    expect(() => parsePasteReply(null)).toThrow();
    expect(() => parsePasteReply({ names: 'OPENAI_API_KEY' })).toThrow();
  });
});

describe('importsOs', () => {
  it('finds an import of os on a line of its own', () => {
    expect(importsOs('import os\nx = 1')).toBe(true);
    expect(importsOs('x = 1\n  import sys, os\n')).toBe(true);
    expect(importsOs('import os.path')).toBe(true); // binds os too
    expect(importsOs('import osmium\nx = 1')).toBe(false);
    expect(importsOs('# import os\nx = 1')).toBe(false);
    expect(importsOs('from os import environ')).toBe(false);
  });
});
