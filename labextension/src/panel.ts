/**
 * The secrets panel (left sidebar): the names in the current notebook's store, where each came
 * from and when; add, replace, delete, and insert the `os.environ["NAME"]` lookup. Values go in
 * through a password field and are never shown: the server never sends them.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { deleteSecret, listSecrets, putSecret } from './api';
import { envSnippet, ISecretList, isValidName } from './protocol';

/** What the panel needs from the rest of the extension. */
export interface IPanelHost {
  /** The path of the notebook whose store the panel shows, or null when none is open. */
  notebookPath(): string | null;
  /** Insert text at the cursor of the active cell. */
  insertIntoActiveCell(text: string): boolean;
  /** Tell the notebook's kernel to re-read these names from the store (or forget them). */
  reloadKernel(names: string[], forget: boolean): void;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]> = {},
  ...children: Array<Node | string>
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) {
    node.append(child);
  }
  return node;
}

export class SecretsPanel extends Widget {
  constructor(private readonly host: IPanelHost) {
    super();
    this.id = 'ipykeyguard-secrets';
    this.addClass('jp-ipykeyguard-panel');
    this.title.caption = 'Secrets (ipykeyguard)';
    this._header = el('div', { className: 'jp-ipykeyguard-store' });
    this._list = el('ul', { className: 'jp-ipykeyguard-list' });
    this._status = el('div', { className: 'jp-ipykeyguard-status' });
    this._name = el('input', {
      className: 'jp-ipykeyguard-name jp-mod-styled',
      placeholder: 'NAME (e.g. OPENAI_API_KEY)',
      spellcheck: false
    });
    this._value = el('input', {
      className: 'jp-ipykeyguard-value jp-mod-styled',
      type: 'password',
      placeholder: 'value (stored, never shown)',
      autocomplete: 'off'
    });
    const add = el('button', { className: 'jp-ipykeyguard-add jp-mod-styled jp-mod-accept', textContent: 'Save secret' });
    add.addEventListener('click', () => void this.save());
    const form = el(
      'form',
      { className: 'jp-ipykeyguard-form' },
      el('div', { className: 'jp-ipykeyguard-form-title', textContent: 'Add or replace a secret' }),
      this._name,
      this._value,
      add
    );
    form.addEventListener('submit', event => {
      event.preventDefault();
      void this.save();
    });
    this.node.append(
      el('h2', { className: 'jp-ipykeyguard-title', textContent: 'Secrets' }),
      this._header,
      this._list,
      form,
      this._status
    );
  }

  /** Fill the name field and focus the value field (used by "replace"). */
  prepare(name: string): void {
    this._name.value = name;
    this._value.value = '';
    this._value.focus();
  }

  /** Re-read the list from the server. */
  async refresh(): Promise<void> {
    const path = this.host.notebookPath();
    if (path === null) {
      this._header.textContent = 'Open a notebook to see the secrets beside it.';
      this._list.replaceChildren();
      return;
    }
    try {
      this.render(await listSecrets(path));
    } catch (error) {
      this.say(`Could not list the secrets: ${(error as Error).message}`, true);
    }
  }

  /** Store the value typed in the form under the name typed, then clear the value field. */
  async save(): Promise<void> {
    const path = this.host.notebookPath();
    const name = this._name.value.trim();
    const value = this._value.value;
    if (path === null) {
      this.say('Open a notebook first: secrets are kept beside it.', true);
      return;
    }
    if (!isValidName(name)) {
      this.say('A name is letters, digits and _ and does not start with a digit.', true);
      return;
    }
    if (!value) {
      this.say('Type the value to store.', true);
      return;
    }
    this._value.value = ''; // the value leaves the page's form at once
    try {
      await putSecret(path, name, value);
    } catch (error) {
      this.say(`Could not store ${name}: ${(error as Error).message}`, true);
      return;
    }
    this.host.reloadKernel([name], false);
    this._name.value = '';
    this.say(`Stored ${name}. Read it with ${envSnippet(name)}.`);
    await this.refresh();
  }

  private async remove(name: string): Promise<void> {
    const path = this.host.notebookPath();
    if (path === null) {
      return;
    }
    try {
      await deleteSecret(path, name);
    } catch (error) {
      this.say(`Could not delete ${name}: ${(error as Error).message}`, true);
      return;
    }
    this.host.reloadKernel([name], true);
    this.say(`Deleted ${name}.`);
    await this.refresh();
  }

  private render(list: ISecretList): void {
    this._header.textContent = `Store: ${list.store}`;
    if (list.secrets.length === 0) {
      this._list.replaceChildren(el('li', { className: 'jp-ipykeyguard-empty', textContent: 'No secrets yet.' }));
      return;
    }
    const rows = list.secrets.map(secret => {
      const insert = el('button', { className: 'jp-ipykeyguard-insert jp-mod-styled', textContent: 'Insert', title: `Insert ${envSnippet(secret.name)} into the active cell` });
      insert.addEventListener('click', () => {
        if (!this.host.insertIntoActiveCell(envSnippet(secret.name))) {
          this.say('Select a code cell first.', true);
        }
      });
      const replace = el('button', { className: 'jp-ipykeyguard-replace jp-mod-styled', textContent: 'Replace', title: `Store a new value for ${secret.name}` });
      replace.addEventListener('click', () => this.prepare(secret.name));
      const del = el('button', { className: 'jp-ipykeyguard-delete jp-mod-styled jp-mod-warn', textContent: 'Delete', title: `Remove ${secret.name} from the store` });
      del.addEventListener('click', () => {
        void showDialog({
          title: `Delete ${secret.name}?`,
          body: `It is removed from ${list.store} and from the running kernel's os.environ.`,
          buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
        }).then(result => {
          if (result.button.accept) {
            void this.remove(secret.name);
          }
        });
      });
      const when = secret.updated ? new Date(secret.updated).toLocaleString() : 'unknown time';
      return el(
        'li',
        { className: 'jp-ipykeyguard-secret' },
        el('div', { className: 'jp-ipykeyguard-secret-name', textContent: secret.name }),
        el('div', { className: 'jp-ipykeyguard-secret-origin', textContent: `${secret.source || 'origin unknown'} · ${when}` }),
        el('div', { className: 'jp-ipykeyguard-secret-actions' }, insert, replace, del)
      );
    });
    this._list.replaceChildren(...rows);
  }

  private say(message: string, error = false): void {
    this._status.textContent = message;
    this._status.classList.toggle('jp-mod-error', error);
  }

  protected onAfterShow(): void {
    void this.refresh();
  }

  private readonly _header: HTMLDivElement;
  private readonly _list: HTMLUListElement;
  private readonly _status: HTMLDivElement;
  private readonly _name: HTMLInputElement;
  private readonly _value: HTMLInputElement;
}
