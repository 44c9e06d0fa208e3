/**
 * ipykeyguard in JupyterLab 4 and Notebook 7.
 *
 * - Talks to the kernel guard over a comm (target `ipykeyguard`, opened by this extension; the
 *   kernel also opens one when `%load_ext ipykeyguard` runs in a kernel this page already uses).
 * - Applies the kernel's rewritten cell text when it moved a key, also when the cell raised
 *   (JupyterLab applies `set_next_input` only on an `ok` reply), and clears the cell's undo
 *   history so that Undo cannot bring the key back.
 * - Shows a notification for each move, and a status-bar item: guard active or not loaded.
 * - Adds the secrets panel (left sidebar) and the paste guard.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { pasteKeys, putSecret } from './api';
import { keyShape, mayHoldKey } from './keyshape';
import { SecretsPanel } from './panel';
import {
  COMM_TARGET,
  envSnippet,
  importsOs,
  isValidName,
  IPasteReply,
  KernelEvent,
  movedNotice,
  parseKernelEvent
} from './protocol';

const OPEN_PANEL = 'ipykeyguard:open-secrets';

const KEY_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24"><path class="jp-icon3" fill="#616161" d="M7 14a2 2 0 1 1 0-4 2 2 0 0 1 0 4zm5.65-4A6 6 0 1 0 12.65 14H16v4h4v-4h2v-4z"/></svg>';
const keyIcon = new LabIcon({ name: 'ipykeyguard:key', svgstr: KEY_SVG });

/** What the page knows about the guard in one kernel. */
type GuardState = 'unknown' | 'active' | 'missing';

interface IKernelGuard {
  state: GuardState;
  comm: Kernel.IComm | null;
  store: string;
}

/** Per kernel connection (a restart keeps the connection object and drops its comms). */
const guards = new WeakMap<Kernel.IKernelConnection, IKernelGuard>();
const targetsRegistered = new WeakSet<Kernel.IKernelConnection>();

class GuardStatus extends Widget {
  constructor() {
    super();
    this.addClass('jp-ipykeyguard-statusitem');
    this.show_('unknown', '');
  }

  show_(state: GuardState | 'none', store: string): void {
    this.node.classList.toggle('jp-mod-warning', state === 'missing');
    if (state === 'active') {
      this.node.textContent = 'keyguard: on';
      this.node.title = `ipykeyguard guards this kernel; moved keys go to ${store}`;
    } else if (state === 'missing') {
      this.node.textContent = 'keyguard: not loaded';
      this.node.title =
        'This kernel has no ipykeyguard guard: run %load_ext ipykeyguard, or `ipykeyguard enable` for every kernel';
    } else if (state === 'unknown') {
      this.node.textContent = 'keyguard: …';
      this.node.title = 'Asking the kernel whether ipykeyguard is loaded';
    } else {
      this.node.textContent = '';
      this.node.title = '';
    }
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'ipykeyguard:plugin',
  description: 'ipykeyguard: secrets panel, rewritten cells and guard status.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    statusBar: IStatusBar | null
  ) => {
    const status = new GuardStatus();

    const currentKernel = (): Kernel.IKernelConnection | null =>
      tracker.currentWidget?.sessionContext.session?.kernel ?? null;

    const refreshStatus = (): void => {
      const kernel = currentKernel();
      if (!kernel) {
        status.show_('none', '');
        return;
      }
      const guard = guards.get(kernel);
      status.show_(guard?.state ?? 'unknown', guard?.store ?? '');
    };

    const panel = new SecretsPanel({
      notebookPath: () => tracker.currentWidget?.context.path ?? null,
      insertIntoActiveCell: (text: string) => {
        const cell = tracker.activeCell;
        if (!cell || cell.model.type !== 'code' || !cell.editor) {
          return false;
        }
        insertAtCursor(cell.editor, text);
        return true;
      },
      reloadKernel: (names: string[], forget: boolean) => {
        const kernel = currentKernel();
        const comm = kernel ? guards.get(kernel)?.comm : null;
        comm?.send({ action: forget ? 'forget' : 'reload', names });
      }
    });
    panel.title.icon = keyIcon;
    app.shell.add(panel, 'left', { rank: 900 });

    app.commands.addCommand(OPEN_PANEL, {
      label: 'Show Secrets (ipykeyguard)',
      execute: () => {
        app.shell.activateById(panel.id);
      }
    });

    /** Apply a kernel event coming over `comm` from `kernel`. */
    const onEvent = (kernel: Kernel.IKernelConnection, event: KernelEvent): void => {
      const guard = guards.get(kernel);
      if (!guard) {
        return;
      }
      if (event.event === 'hello') {
        guard.state = 'active';
        guard.store = event.store;
        refreshStatus();
      } else if (event.event === 'moved') {
        guard.state = 'active';
        guard.store = event.store;
        refreshStatus();
        applyRewrite(tracker, kernel, event.cell_id, event.text);
        Notification.info(`ipykeyguard: ${movedNotice(event.names, event.store)}`, {
          autoClose: 10000,
          actions: [{ label: 'Show secrets', callback: () => void app.commands.execute(OPEN_PANEL) }]
        });
        if (panel.isVisible) {
          void panel.refresh();
        }
      } else if (event.event === 'reloaded' && panel.isVisible) {
        void panel.refresh();
      }
    };

    /** Use `comm` as the kernel's guard channel (replacing an earlier one). */
    const adopt = (kernel: Kernel.IKernelConnection, comm: Kernel.IComm): void => {
      const guard = guards.get(kernel) ?? { state: 'unknown' as GuardState, comm: null, store: '' };
      guards.set(kernel, guard);
      const previous = guard.comm;
      guard.comm = comm;
      comm.onMsg = (msg: KernelMessage.ICommMsgMsg) => {
        const event = parseKernelEvent(msg.content.data);
        if (event) {
          onEvent(kernel, event);
        }
      };
      comm.onClose = () => {
        if (guard.comm === comm) {
          guard.comm = null;
          // Closed by the kernel: at once when it has no `ipykeyguard` target (no guard), or
          // later by `%unload_ext ipykeyguard`. (A restart disposes comms without closing them;
          // statusChanged handles that.) `%load_ext` opens a new comm towards the page.
          guard.state = 'missing';
          refreshStatus();
        }
      };
      if (previous && previous !== comm && !previous.isDisposed) {
        previous.onClose = () => undefined;
        previous.close();
      }
    };

    /** Open the guard comm of `kernel` unless one is open or the answer is known. */
    const connect = (kernel: Kernel.IKernelConnection | null | undefined): void => {
      if (!kernel || kernel.isDisposed) {
        return;
      }
      if (!targetsRegistered.has(kernel)) {
        targetsRegistered.add(kernel);
        // `%load_ext ipykeyguard` in a running kernel opens a comm towards the page.
        kernel.registerCommTarget(COMM_TARGET, (comm, msg) => {
          adopt(kernel, comm);
          const event = parseKernelEvent(msg.content.data);
          if (event) {
            onEvent(kernel, event);
          }
        });
        kernel.statusChanged.connect((_, s) => {
          const guard = guards.get(kernel);
          // 'starting' is what a page sees of a restart requested elsewhere (REST, another tab),
          // when its own comms are not disposed: they died with the old process all the same.
          if (s === 'restarting' || s === 'autorestarting' || s === 'starting' || s === 'dead') {
            if (guard) {
              guard.state = 'unknown';
              guard.comm = null;
            }
            refreshStatus();
          } else if (s === 'idle' && guard) {
            // A restart disposes the connection's comms (and drops messages queued meanwhile,
            // such as a comm_open sent while it restarted) without closing them: open anew.
            if (guard.comm?.isDisposed) {
              guard.comm = null;
              guard.state = 'unknown';
            }
            if (!guard.comm && guard.state === 'unknown') {
              connect(kernel);
            }
          }
        });
      }
      const existing = guards.get(kernel);
      if (existing && ((existing.comm && !existing.comm.isDisposed) || existing.state === 'missing')) {
        return;
      }
      try {
        const comm = kernel.createComm(COMM_TARGET);
        adopt(kernel, comm);
        comm.open({ action: 'hello' });
      } catch (error) {
        console.warn('ipykeyguard: could not open the guard comm', error);
      }
      refreshStatus();
    };

    const watch = (nb: NotebookPanel): void => {
      const sessionContext = nb.sessionContext;
      void sessionContext.ready.then(() => connect(sessionContext.session?.kernel));
      sessionContext.kernelChanged.connect((_, change) => {
        connect(change.newValue);
        refreshStatus();
      });
      installPasteGuard(nb, panel, (names: string[]) => {
        const kernel = sessionContext.session?.kernel;
        const comm = kernel ? guards.get(kernel)?.comm : null;
        comm?.send({ action: 'reload', names });
      });
    };

    tracker.widgetAdded.connect((_, nb) => watch(nb));
    tracker.forEach(watch);
    tracker.currentChanged.connect(() => {
      refreshStatus();
      if (panel.isVisible) {
        void panel.refresh();
      }
    });

    if (statusBar) {
      statusBar.registerStatusItem('ipykeyguard:status', {
        item: status,
        align: 'left',
        rank: 5,
        isActive: () => tracker.currentWidget !== null && tracker.currentWidget === app.shell.currentWidget
      });
    }
  }
};

/** Insert `text` at the editor's cursor (replacing the selection). */
function insertAtCursor(editor: { replaceSelection?: (t: string) => void; model: { sharedModel: { getSource(): string; setSource(s: string): void } } }, text: string): void {
  if (editor.replaceSelection) {
    editor.replaceSelection(text);
  } else {
    const source = editor.model.sharedModel.getSource();
    editor.model.sharedModel.setSource(source + text);
  }
}

/**
 * Put the kernel's rewritten text into the cell it ran from, and forget the cell's undo history
 * (its earlier states hold the key).
 */
function applyRewrite(
  tracker: INotebookTracker,
  kernel: Kernel.IKernelConnection,
  cellId: string | null,
  text: string
): void {
  if (cellId === null) {
    return;
  }
  tracker.forEach(nb => {
    if (nb.sessionContext.session?.kernel !== kernel) {
      return;
    }
    for (const cell of nb.content.widgets) {
      if (cell.model.id === cellId) {
        const shared = cell.model.sharedModel;
        if (shared.getSource() !== text) {
          shared.setSource(text);
        }
        shared.clearUndoHistory();
      }
    }
  });
}

/**
 * Offer "store as secret instead" when a key-shaped value is pasted into a code cell.
 */
function installPasteGuard(nb: NotebookPanel, panel: SecretsPanel, reload: (names: string[]) => void): void {
  nb.content.node.addEventListener(
    'paste',
    (event: ClipboardEvent) => {
      const target = event.target as HTMLElement | null;
      if (!target || !target.closest('.jp-CodeCell .jp-InputArea')) {
        return;
      }
      const pasted = event.clipboardData?.getData('text/plain') ?? '';
      const shape = keyShape(pasted);
      if (!shape && !mayHoldKey(pasted)) {
        return;
      }
      event.preventDefault();
      event.stopPropagation();
      const cell = nb.content.activeCell;
      if (!cell || !cell.editor) {
        return;
      }
      const editor = cell.editor;
      if (!shape) {
        // A snippet: the server finds its keys with the real engine.
        void offerSnippet(nb.context.path, pasted).then(reply => {
          if (reply === null) {
            insertAtCursor(editor as any, pasted);
            return;
          }
          insertAtCursor(editor as any, reply.text ?? '');
          const shared = cell.model.sharedModel;
          if (reply.importOs && !importsOs(shared.getSource())) {
            shared.setSource('import os\n' + shared.getSource());
          }
          reload(reply.names);
          Notification.success(`ipykeyguard: stored ${reply.names.join(', ')}; the pasted code reads them from os.environ`, {
            autoClose: 6000
          });
          if (panel.isVisible) {
            void panel.refresh();
          }
        });
        return;
      }
      void askAndStore(nb.context.path, shape.name, shape.value).then(result => {
        if (result === null) {
          insertAtCursor(editor as any, pasted);
          return;
        }
        reload([result]);
        insertAtCursor(editor as any, envSnippet(result));
        Notification.success(`ipykeyguard: stored ${result}; the cell reads ${envSnippet(result)}`, {
          autoClose: 6000
        });
        if (panel.isVisible) {
          void panel.refresh();
        }
      });
    },
    true
  );
}

/**
 * For pasted code the first look says may hold a key: ask the server which keys it holds, and
 * whether to store them and paste the code reading them. Returns the server's rewrite, or null
 * to paste the text as it is (no key found, declined, or the server could not be asked).
 */
async function offerSnippet(path: string, pasted: string): Promise<IPasteReply | null> {
  let found: IPasteReply;
  try {
    found = await pasteKeys(path, pasted, false);
  } catch (error) {
    console.warn('ipykeyguard: could not check the pasted text', error);
    return null;
  }
  if (found.names.length === 0) {
    return null;
  }
  const n = found.names.length;
  const body = new Widget();
  body.addClass('jp-ipykeyguard-paste');
  const text = document.createElement('p');
  const [them, secrets] = n === 1 ? ['it', 'a secret'] : ['them', 'secrets'];
  text.textContent =
    `This code holds ${n === 1 ? 'an API key' : `${n} API keys`} (${found.names.join(', ')}). ` +
    `Store ${them} as ${secrets} (in the store beside the notebook) and paste the code reading ${them} with os.environ?`;
  body.node.append(text);
  const result = await showDialog({
    title: n === 1 ? 'Store the key as a secret instead?' : 'Store the keys as secrets instead?',
    body,
    buttons: [Dialog.cancelButton({ label: 'Paste as is' }), Dialog.okButton({ label: 'Store and paste' })]
  });
  if (!result.button.accept) {
    return null;
  }
  try {
    return await pasteKeys(path, pasted, true);
  } catch (error) {
    return showStoreError('Could not store the keys', error);
  }
}

/** Tell the person a store failed (the server's message names no value); paste as is. */
async function showStoreError(title: string, error: unknown): Promise<null> {
  await showDialog({ title, body: (error as Error).message, buttons: [Dialog.okButton()] });
  return null;
}

/**
 * Ask whether to store a pasted key. Returns the name it was stored under, or null to paste
 * the text as it is.
 */
async function askAndStore(path: string, suggested: string, value: string): Promise<string | null> {
  let name = suggested;
  let note =
    'This looks like an API key. Store it as a secret (in the store beside the notebook) and insert an os.environ lookup instead?';
  for (;;) {
    // A dialog disposes its body when it closes: build a new one for each attempt.
    const body = new Widget();
    body.addClass('jp-ipykeyguard-paste');
    const text = document.createElement('p');
    text.textContent = note;
    const input = document.createElement('input');
    input.className = 'jp-mod-styled jp-ipykeyguard-paste-name';
    input.value = name;
    input.spellcheck = false;
    body.node.append(text, input);
    const result = await showDialog({
      title: 'Store as secret instead?',
      body,
      buttons: [Dialog.cancelButton({ label: 'Paste as is' }), Dialog.okButton({ label: 'Store as secret' })],
      focusNodeSelector: 'input'
    });
    if (!result.button.accept) {
      return null;
    }
    name = input.value.trim();
    if (!isValidName(name)) {
      note = 'A name is letters, digits and _ and does not start with a digit. Try again:';
      continue;
    }
    try {
      await putSecret(path, name, value);
      return name;
    } catch (error) {
      return showStoreError('Could not store the secret', error);
    }
  }
}

export default plugin;
