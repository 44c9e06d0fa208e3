/**
 * The server's secrets API (ipykeyguard/server/secrets.py), through JupyterLab's authenticated
 * `ServerConnection` (token, XSRF cookie and base URL as every Jupyter request).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { IPasteReply, ISecretList, parsePasteReply, parseSecretList } from './protocol';

const settings = (): ServerConnection.ISettings => ServerConnection.makeSettings();

function url(name: string | null, notebookPath: string): string {
  const base = settings().baseUrl;
  const parts = name === null ? ['ipykeyguard', 'secrets'] : ['ipykeyguard', 'secrets', encodeURIComponent(name)];
  return URLExt.join(base, ...parts) + URLExt.objectToQueryString({ path: notebookPath });
}

async function request(target: string, init: RequestInit): Promise<Response> {
  const s = settings();
  const response = await ServerConnection.makeRequest(target, init, s);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && typeof body.message === 'string') {
        message = body.message;
      }
    } catch {
      // not JSON: keep the status line
    }
    throw new Error(message);
  }
  return response;
}

/** The names in the store of the notebook at `notebookPath` (never the values). */
export async function listSecrets(notebookPath: string): Promise<ISecretList> {
  const response = await request(url(null, notebookPath), { method: 'GET' });
  return parseSecretList(await response.json());
}

/** Store `value` under `name` in the notebook's store (added or replaced). */
export async function putSecret(notebookPath: string, name: string, value: string): Promise<void> {
  await request(url(name, notebookPath), {
    method: 'PUT',
    body: JSON.stringify({ value }),
    headers: { 'Content-Type': 'application/json' }
  });
}

/** Remove `name` from the notebook's store. */
export async function deleteSecret(notebookPath: string, name: string): Promise<void> {
  await request(url(name, notebookPath), { method: 'DELETE' });
}

/**
 * Ask the server about code pasted into a cell of the notebook at `notebookPath`: with
 * `store` false, the names its keys would take (nothing is written); with `store` true, the keys
 * move into the notebook's store and the reply holds the code rewritten to read them.
 */
export async function pasteKeys(notebookPath: string, text: string, store: boolean): Promise<IPasteReply> {
  const base = settings().baseUrl;
  const target = URLExt.join(base, 'ipykeyguard', 'paste') + URLExt.objectToQueryString({ path: notebookPath });
  const response = await request(target, {
    method: 'POST',
    body: JSON.stringify({ text, store }),
    headers: { 'Content-Type': 'application/json' }
  });
  return parsePasteReply(await response.json());
}
