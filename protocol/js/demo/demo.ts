/**
 * The demo page served by coedit at `GET /`: pick or create a document, edit it together in a
 * shared textarea, see who is here (a name and colour each), their carets and selections drawn
 * over the text, the connection status, the server-confirmed revision, errors (kept until
 * dismissed or until the next edit is saved) and a read-only marker for viewers. Built into
 * `src/static/coedit-demo.js` by `npm run build`.
 *
 * The document id comes from the address (`#doc=ID`), so sharing the address shares the
 * document. An access token never stays in the address: `#token=…` (a token) or
 * `#token_url=…` (an endpoint of the application's backend that returns a fresh token, asked
 * with the browser's cookies before each connection and before expiry) is read once, kept in
 * this tab's sessionStorage, and removed from the address (`credentials.ts`).
 */
import { CoeditClient } from '../src/client.js';
import type { ClientError } from '../src/events.js';
import { bindTextarea, type Binding } from '../src/textarea.js';
import { uniToUtf16 } from '../src/unicode.js';
import { params, store, stored, takeCredentialsFromAddress, tokenSource, TOKEN_KEY, TOKEN_URL_KEY } from './credentials.js';
import { assignColors, nameFor } from './people.js';

/** Document opened when the address names none. */
const DEFAULT_DOC = 'welcome';
/** Length of the random part of a new document id. */
const NEW_DOC_ID_LEN = 8;
const DOC_ID = /^[A-Za-z0-9._~-]{1,128}$/;
/** Errors shown at once. */
const MAX_ERRORS = 3;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const textarea = $<HTMLTextAreaElement>('text');
const overlay = $<HTMLDivElement>('overlay');
const people = $<HTMLUListElement>('people');
const status = $<HTMLDivElement>('status');
const docInput = $<HTMLInputElement>('doc-id');
const meta = $<HTMLParagraphElement>('meta');

// Elements and styles the static page does not have: an error box and a read-only marker.
const style = document.createElement('style');
style.textContent = `
#errors { margin: 12px 0; }
#errors:empty { display: none; }
#errors .error { position: relative; padding: 8px 28px 8px 10px; margin-bottom: 6px; border-radius: 8px;
  background: #fdecea; border: 1px solid #f5c2bd; color: #8a1f17; font-size: 13px; overflow-wrap: anywhere; }
#errors .error button { padding: 2px 8px; margin-top: 6px; font-size: 12px; }
#errors .error .dismiss { position: absolute; top: 2px; right: 4px; margin: 0; border: 0; background: none;
  font-size: 16px; line-height: 1; cursor: pointer; color: inherit; }
#errors details { margin-top: 4px; white-space: pre-wrap; }
#readonly { padding: 2px 10px; border-radius: 999px; background: #fff4e0; border: 1px solid #f0c36d;
  color: #7a4b00; font-size: 12px; font-weight: 600; }
#readonly[hidden] { display: none; }
#text[readonly] { cursor: default; background: repeating-linear-gradient(135deg, transparent 0 14px, #f6f7f9 14px 28px); }
`;
document.head.appendChild(style);
const errors = document.createElement('div');
errors.id = 'errors';
errors.setAttribute('role', 'alert');
meta.before(errors);
const readOnlyBadge = document.createElement('span');
readOnlyBadge.id = 'readonly';
readOnlyBadge.textContent = 'read-only';
readOnlyBadge.hidden = true;
status.before(readOnlyBadge);

let client: CoeditClient | null = null;
let binding: Binding | null = null;

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Every participant's colour, the same on every page that sees the same participants. */
function colors(): Map<string, string> {
  if (!client) return new Map();
  const ids = [client.clientId, ...client.peers.keys()].filter((c) => c);
  const fixed = new Map([...client.peerUsers].map(([id, u]) => [id, u.color]));
  return assignColors(ids, fixed);
}

/** Redraws the others' carets and selections over the text (same font, wrapping, padding). */
function renderOverlay(): void {
  if (!client) return;
  const text = textarea.value;
  const palette = colors();
  const colorOf = (id: string) => palette.get(id) ?? '#888';
  type Mark = { at: number; kind: 'start' | 'end' | 'caret'; client: string };
  const marks: Mark[] = [];
  for (const [id, sel] of client.peers) {
    for (const [a, h] of sel) {
      const [from, to] = [uniToUtf16(text, Math.min(a, h)), uniToUtf16(text, Math.max(a, h))];
      if (from !== to) {
        marks.push({ at: from, kind: 'start', client: id }, { at: to, kind: 'end', client: id });
      }
      marks.push({ at: uniToUtf16(text, h), kind: 'caret', client: id });
    }
  }
  const order = { end: 0, caret: 1, start: 2 } as const;
  marks.sort((x, y) => x.at - y.at || order[x.kind] - order[y.kind]);
  let html = '';
  let pos = 0;
  const open: string[] = [];
  const closeAll = () => '</span>'.repeat(open.length);
  const reopen = () => open.map((c) => `<span class="sel" style="--c:${colorOf(c)}">`).join('');
  for (const m of marks) {
    html += escapeHtml(text.slice(pos, m.at));
    pos = m.at;
    if (m.kind === 'caret') {
      const name = nameFor(m.client, client.peerUsers.get(m.client));
      html += `<span class="caret" style="--c:${colorOf(m.client)}"><span class="tag">${escapeHtml(name)}</span></span>`;
    } else {
      html += closeAll();
      if (m.kind === 'start') open.push(m.client);
      else open.splice(open.indexOf(m.client), 1);
      html += reopen();
    }
  }
  html += escapeHtml(text.slice(pos)) + closeAll() + '\u200b';
  overlay.innerHTML = html;
  overlay.style.paddingRight = `${28 + textarea.offsetWidth - textarea.clientWidth}px`;
  overlay.scrollTop = textarea.scrollTop;
}

function renderPeople(): void {
  if (!client) return;
  const c = client;
  const palette = colors();
  const ids = [c.clientId, ...[...c.peers.keys()].filter((id) => id !== c.clientId)];
  people.innerHTML = ids
    .filter((id) => id)
    .map((id, i) => {
      const you = i === 0 ? '<span class="you">you</span>' : '';
      const name = nameFor(id, c.peerUsers.get(id));
      return `<li data-client="${escapeHtml(id)}" style="--c:${palette.get(id)}"><span class="swatch"></span>${escapeHtml(name)}${you}</li>`;
    })
    .join('');
}

/** The server-confirmed revision, and whether local edits are still on their way. */
function renderMeta(): void {
  if (!client) return;
  meta.textContent = `revision ${client.rev}${client.synced ? '' : ' · saving…'}`;
}

function renderAccess(): void {
  if (!client) return;
  readOnlyBadge.hidden = client.canWrite;
  readOnlyBadge.title = client.canWrite ? '' : `Your role on this document is ${client.role}: you can read, not edit.`;
}

/** Shows an error until dismissed or until the next edit is saved. */
function showError(text: string, extra?: (box: HTMLDivElement) => void): void {
  const box = document.createElement('div');
  box.className = 'error';
  box.textContent = text;
  const dismiss = document.createElement('button');
  dismiss.className = 'dismiss';
  dismiss.type = 'button';
  dismiss.title = 'Dismiss';
  dismiss.textContent = '×';
  dismiss.addEventListener('click', () => box.remove());
  box.append(dismiss);
  extra?.(box);
  errors.append(box);
  while (errors.children.length > MAX_ERRORS) errors.firstElementChild!.remove();
}

function details(summary: string, text: string): (box: HTMLDivElement) => void {
  return (box) => {
    const d = document.createElement('details');
    const s = document.createElement('summary');
    s.textContent = summary;
    d.append(s, text);
    box.append(d);
  };
}

/** A button that asks for a new token and resumes the stopped client with it. */
function newTokenButton(c: CoeditClient): (box: HTMLDivElement) => void {
  return (box) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'new-token';
    b.textContent = stored(TOKEN_URL_KEY) ? 'Retry' : 'Use a new token…';
    b.addEventListener('click', () => {
      if (!stored(TOKEN_URL_KEY)) {
        const token = prompt('Paste a new access token for this document:')?.trim();
        if (!token) return;
        store(TOKEN_KEY, token);
      }
      const source = tokenSource();
      if (source === undefined) return;
      box.remove();
      c.setToken(source);
    });
    box.append(document.createElement('br'), b);
  };
}

function onError(c: CoeditClient, e: ClientError): void {
  if (e.willRetry) return; // the client recovers by itself; the status shows it
  const stopped = c.status === 'closed';
  const text = `${e.msg.replace(/; call setToken\(\) to resume$/, '')} (${e.code})`;
  showError(text, stopped ? newTokenButton(c) : undefined);
}

function open(doc: string): void {
  binding?.unbind();
  client?.close();
  errors.replaceChildren();
  docInput.value = doc;
  document.title = `${doc} — coedit`;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  client = new CoeditClient({ url: `${scheme}://${location.host}/ws`, doc, token: tokenSource() });
  binding = bindTextarea(textarea, client);
  const c = client;
  c.on('status', (s) => {
    status.dataset.status = s;
    status.querySelector('.label')!.textContent = s;
    renderPeople();
  });
  c.on('change', () => {
    renderOverlay();
    renderMeta();
  });
  c.on('ack', () => {
    errors.replaceChildren(); // an edit was saved: older errors are over
    renderMeta();
  });
  c.on('synced', renderMeta);
  c.on('presence', () => {
    renderOverlay();
    renderPeople();
  });
  c.on('users', () => {
    renderOverlay();
    renderPeople();
  });
  c.on('access', renderAccess);
  c.on('error', (e) => onError(c, e));
  c.on('lost', ({ ops, text }) => {
    const msg = `${ops.length} edit(s) could not be saved and were undone; your version is below.`;
    showError(msg, details('Your version', text));
  });
  c.on('unsent', ({ ops, text }) => {
    showError(`${ops.length} edit(s) are not saved yet (kept in this page).`, details('This page’s text', text));
  });
  (window as unknown as { coeditDemo: unknown }).coeditDemo = { client: c, textarea };
  renderAccess();
  renderOverlay();
}

function randomId(): string {
  const alphabet = 'abcdefghijkmnpqrstuvwxyz23456789';
  const bytes = crypto.getRandomValues(new Uint8Array(NEW_DOC_ID_LEN));
  return [...bytes].map((b) => alphabet[b % alphabet.length]).join('');
}

function go(doc: string): void {
  const p = params();
  p.set('doc', doc);
  location.hash = p.toString();
}

$<HTMLFormElement>('doc-form').addEventListener('submit', (e) => {
  e.preventDefault();
  if (DOC_ID.test(docInput.value)) go(docInput.value);
});
$<HTMLButtonElement>('new-doc').addEventListener('click', () => go(`doc-${randomId()}`));
window.addEventListener('hashchange', () => {
  takeCredentialsFromAddress();
  const doc = params().get('doc') ?? DEFAULT_DOC;
  if (doc !== client?.doc && DOC_ID.test(doc)) open(doc);
});
textarea.addEventListener('scroll', () => (overlay.scrollTop = textarea.scrollTop));
textarea.addEventListener('input', renderOverlay);
window.addEventListener('resize', renderOverlay);

takeCredentialsFromAddress();
const initial = params().get('doc') ?? DEFAULT_DOC;
open(DOC_ID.test(initial) ? initial : DEFAULT_DOC);
