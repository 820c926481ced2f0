/**
 * The rich-text page served by coedit at `GET /richtext`: a Tiptap editor on a Yjs document,
 * synchronized with the server's Hocuspocus endpoint (`/hocuspocus`), with the others' carets
 * and names, who is here, a small toolbar (bold, italic, heading, bullet list) and the
 * connection status. Built into `src/static/coedit-richtext.js` by `npm run build`.
 *
 * - The document id comes from the address: `#doc=ID` (as on the text page), `#ID` or
 *   `?doc=ID`; `richtext` when there is none. The editor's content is the Yjs XML fragment
 *   `default` (Tiptap's default field), which the server shows in `GET /api/docs/{id}`.
 * - Tokens: as on the text page (`demo/credentials.ts`), never kept in the address. Without one
 *   the page connects without authentication (an empty token).
 * - Status: `connecting`, `offline`, `connected` (handshake under way), `saving` (the server has
 *   not yet confirmed every local change: the provider's `unsyncedChanges` > 0) and `synced`
 *   (it has: every local change is stored on the server).
 * - Colours: each page takes the palette slot that `demo/people.ts` assigns to its Yjs client id
 *   among everyone present, so every page that sees the same people shows the same, distinct
 *   colours. The name is the one typed in the side panel (kept in localStorage), else a guest
 *   name.
 * - The browser's `offline` event closes the socket at once (the provider would otherwise wait
 *   for its 30 s silence timeout); typing goes on locally and is merged when `online` reconnects.
 */
import { HocuspocusProvider, WebSocketStatus } from '@hocuspocus/provider';
import { Editor, Extension } from '@tiptap/core';
import Collaboration from '@tiptap/extension-collaboration';
import CollaborationCaret from '@tiptap/extension-collaboration-caret';
import { Plugin, PluginKey } from '@tiptap/pm/state';
import StarterKit from '@tiptap/starter-kit';
import { ySyncPluginKey } from '@tiptap/y-tiptap';
import * as Y from 'yjs';
import { params, takeCredentialsFromAddress, tokenSource } from '../demo/credentials.js';
import { assignColors, nameFor } from '../demo/people.js';

/** Document opened when the address names none. */
const DEFAULT_DOC = 'richtext';
const DOC_ID = /^[A-Za-z0-9._~-]{1,128}$/;
/** The Yjs XML fragment that holds the editor's content (Tiptap's default). */
const FIELD = 'default';
/** localStorage key of the name typed in the side panel. */
const NAME_KEY = 'coedit.name';
const MAX_NAME_CHARS = 64;

type User = { name: string; color: string };
type Status = 'connecting' | 'offline' | 'connected' | 'saving' | 'synced';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const statusBox = $<HTMLDivElement>('status');
const people = $<HTMLUListElement>('people');
const notice = $<HTMLParagraphElement>('notice');
const readOnlyBadge = $<HTMLSpanElement>('readonly');
const docInput = $<HTMLInputElement>('doc-id');
const nameInput = $<HTMLInputElement>('name');

/** The document named by the address (see the module doc), or null if it names an invalid one. */
function docFromAddress(): string | null {
  const hash = location.hash.slice(1);
  const bare = hash && !hash.includes('=') ? hash : null;
  const named = params().get('doc') ?? bare ?? new URLSearchParams(location.search).get('doc') ?? DEFAULT_DOC;
  return DOC_ID.test(named) ? named : null;
}

function savedName(): string {
  try {
    return localStorage.getItem(NAME_KEY) ?? '';
  } catch {
    return '';
  }
}

/** A name as the text page's server keeps one: no control characters, at most 64 chars. */
function cleanName(s: string): string {
  return [...s.replace(/\p{Cc}/gu, '').trim()].slice(0, MAX_NAME_CHARS).join('');
}

takeCredentialsFromAddress();
const doc = docFromAddress() ?? DEFAULT_DOC;
docInput.value = doc;
document.title = `${doc} — coedit rich text`;

const ydoc = new Y.Doc();
const source = tokenSource();
const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
const provider = new HocuspocusProvider({
  url: `${scheme}://${location.host}/hocuspocus`,
  name: doc,
  document: ydoc,
  token: typeof source === 'function' ? async () => source() : (source ?? null),
});
const socket = provider.configuration.websocketProvider;

const user: User = {
  name: cleanName(savedName()) || nameFor(String(ydoc.clientID)),
  color: assignColors([String(ydoc.clientID)]).get(String(ydoc.clientID))!,
};
nameInput.value = cleanName(savedName());
nameInput.placeholder = user.name;

/** Keeps a pending mark (Bold pressed with nothing selected, before typing) through others'
 * changes. ProseMirror drops stored marks on every change of the document, and each remote
 * change arrives as one: without this, someone else typing anywhere cancels the toggle. */
const KeepStoredMarks = Extension.create({
  name: 'keepStoredMarks',
  addProseMirrorPlugins() {
    return [
      new Plugin({
        key: new PluginKey('keepStoredMarks'),
        appendTransaction(transactions, before, after) {
          const remote = transactions.some((tr) => tr.getMeta(ySyncPluginKey)?.isChangeOrigin);
          if (!remote || !before.storedMarks || after.storedMarks || !after.selection.empty) return null;
          return after.tr.setStoredMarks(before.storedMarks);
        },
      }),
    ];
  },
});

const editor = new Editor({
  element: $<HTMLDivElement>('editor'),
  extensions: [
    // Collaboration brings its own undo (of the local user's changes only). The trailing
    // paragraph is off: each page adds it by itself, a change nobody typed that two pages can
    // make at once (two empty paragraphs); Enter in an empty list item leaves a list.
    StarterKit.configure({ undoRedo: false, trailingNode: false }),
    Collaboration.configure({ document: ydoc, field: FIELD }),
    CollaborationCaret.configure({ provider, user }),
    KeepStoredMarks,
  ],
  editorProps: { attributes: { 'aria-label': 'Shared rich-text document', spellcheck: 'false' } },
});

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Everyone present with a user (the awareness states), this page first. */
function present(): [number, User][] {
  const out: [number, User][] = [];
  for (const [id, state] of provider.awareness!.getStates()) {
    const u = state.user as Partial<User> | undefined;
    if (u && typeof u.name === 'string') out.push([id, { name: u.name, color: String(u.color) }]);
  }
  return out.sort(([a], [b]) => (a === ydoc.clientID ? -1 : b === ydoc.clientID ? 1 : a - b));
}

/** Takes the colour the palette gives this page among everyone here, if it changed. */
function updateColor(): void {
  const ids = [ydoc.clientID, ...provider.awareness!.getStates().keys()].map(String);
  const color = assignColors(ids).get(String(ydoc.clientID))!;
  if (color !== user.color) {
    user.color = color;
    editor.commands.updateUser({ ...user });
  }
}

function renderPeople(): void {
  people.innerHTML = present()
    .map(([id, u]) => {
      const you = id === ydoc.clientID ? '<span class="you">you</span>' : '';
      const color = /^#[0-9a-fA-F]{6}$/.test(u.color) ? u.color : '#888';
      return `<li data-client="${id}" style="--c:${color}"><span class="swatch"></span>${escapeHtml(u.name)}${you}</li>`;
    })
    .join('');
}

function status(): Status {
  if (socket.status !== WebSocketStatus.Connected) {
    return socket.status === WebSocketStatus.Connecting && navigator.onLine ? 'connecting' : 'offline';
  }
  if (!provider.isSynced) return 'connected';
  return provider.unsyncedChanges > 0 ? 'saving' : 'synced';
}

const LABELS: Record<Status, string> = {
  connecting: 'connecting',
  offline: 'offline',
  connected: 'connected',
  saving: 'saving…',
  synced: 'synced',
};

function renderStatus(): void {
  const s = status();
  statusBox.dataset.status = s;
  statusBox.querySelector('.label')!.textContent = LABELS[s];
  statusBox.title =
    s === 'synced'
      ? 'Every change is stored on the server'
      : `${provider.unsyncedChanges} change(s) not yet confirmed by the server`;
}

function say(text: string): void {
  notice.textContent = text;
  notice.hidden = !text;
}

provider.on('status', renderStatus);
provider.on('synced', renderStatus);
provider.on('unsyncedChanges', renderStatus);
provider.on('authenticated', ({ scope }: { scope: string }) => {
  const readOnly = scope === 'read-only';
  editor.setEditable(!readOnly);
  readOnlyBadge.hidden = !readOnly;
  say('');
});
provider.on('authenticationFailed', ({ reason }: { reason: string }) => {
  say(`The server refused access to “${doc}”: ${reason}`);
});
provider.awareness!.on('change', () => {
  updateColor();
  renderPeople();
});

// The toolbar: buttons keep the editor's focus and selection (no focus on mousedown).
const COMMANDS: Record<string, { run: () => boolean; active: () => boolean }> = {
  bold: { run: () => editor.chain().focus().toggleBold().run(), active: () => editor.isActive('bold') },
  italic: { run: () => editor.chain().focus().toggleItalic().run(), active: () => editor.isActive('italic') },
  heading: {
    run: () => editor.chain().focus().toggleHeading({ level: 2 }).run(),
    active: () => editor.isActive('heading', { level: 2 }),
  },
  bulletList: { run: () => editor.chain().focus().toggleBulletList().run(), active: () => editor.isActive('bulletList') },
};
const buttons = Array.from(document.querySelectorAll<HTMLButtonElement>('#toolbar button[data-cmd]'));
for (const b of buttons) {
  b.addEventListener('mousedown', (e) => e.preventDefault());
  b.addEventListener('click', () => COMMANDS[b.dataset.cmd!]?.run());
}
function renderToolbar(): void {
  for (const b of buttons) {
    b.setAttribute('aria-pressed', String(COMMANDS[b.dataset.cmd!]?.active() ?? false));
    b.disabled = !editor.isEditable;
  }
}
editor.on('transaction', renderToolbar);

nameInput.addEventListener('change', () => {
  const name = cleanName(nameInput.value);
  try {
    if (name) localStorage.setItem(NAME_KEY, name);
    else localStorage.removeItem(NAME_KEY);
  } catch {
    // storage disabled: the name lasts as long as the page
  }
  user.name = name || nameFor(String(ydoc.clientID));
  nameInput.value = name;
  editor.commands.updateUser({ ...user });
});

window.addEventListener('offline', () => {
  socket.disconnect();
  renderStatus();
});
window.addEventListener('online', () => void socket.connect());

// Another document (the form, or an edited address): a fresh page, with a fresh Yjs document.
function go(id: string): void {
  const p = params();
  p.set('doc', id);
  location.hash = p.toString();
}
$<HTMLFormElement>('doc-form').addEventListener('submit', (e) => {
  e.preventDefault();
  if (DOC_ID.test(docInput.value)) go(docInput.value);
});
window.addEventListener('hashchange', () => {
  takeCredentialsFromAddress();
  const next = docFromAddress();
  if (next && next !== doc) location.reload();
});

(window as unknown as { coeditRichtext: unknown }).coeditRichtext = { editor, provider, ydoc, user };
renderStatus();
renderPeople();
renderToolbar();
