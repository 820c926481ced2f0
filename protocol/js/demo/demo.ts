/**
 * The demo page served by coedit at `GET /`: pick or create a document, edit it together in a
 * shared textarea, see who is here (a colour each), their carets and selections drawn over the
 * text, and the connection status. Built into `src/static/coedit-demo.js` by `npm run build`.
 *
 * The document id comes from the address (`#doc=ID`, optional `&token=…`), so sharing the
 * address shares the document.
 */
import { CoeditClient } from '../src/client.js';
import { bindTextarea, type Binding } from '../src/textarea.js';
import { uniToUtf16 } from '../src/unicode.js';
import type { Range } from '../src/wire.js';

/** Document opened when the address names none. */
const DEFAULT_DOC = 'welcome';
/** Length of the random part of a new document id. */
const NEW_DOC_ID_LEN = 8;
const DOC_ID = /^[A-Za-z0-9._~-]{1,128}$/;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const textarea = $<HTMLTextAreaElement>('text');
const overlay = $<HTMLDivElement>('overlay');
const people = $<HTMLUListElement>('people');
const status = $<HTMLDivElement>('status');
const docInput = $<HTMLInputElement>('doc-id');
const meta = $<HTMLParagraphElement>('meta');

/** A stable colour for a client id. */
export function colorFor(client: string): string {
  let h = 0;
  for (let i = 0; i < client.length; i++) h = (h * 31 + client.charCodeAt(i)) >>> 0;
  return `hsl(${h % 360} 70% 45%)`;
}

/** A short display name for a client id. */
export function nameFor(client: string): string {
  return `Guest ${client.slice(-4).toUpperCase()}`;
}

function params(): URLSearchParams {
  return new URLSearchParams(location.hash.slice(1));
}

let client: CoeditClient | null = null;
let binding: Binding | null = null;

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Redraws the others' carets and selections over the text (same font, wrapping, padding). */
function renderOverlay(): void {
  if (!client) return;
  const text = textarea.value;
  type Mark = { at: number; kind: 'start' | 'end' | 'caret'; client: string };
  const marks: Mark[] = [];
  for (const [id, sel] of client.peers) {
    for (const [a, h] of sel as Range[]) {
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
  const reopen = () => open.map((c) => `<span class="sel" style="--c:${colorFor(c)}">`).join('');
  for (const m of marks) {
    html += escapeHtml(text.slice(pos, m.at));
    pos = m.at;
    const c = colorFor(m.client);
    if (m.kind === 'caret') {
      html += `<span class="caret" style="--c:${c}"><span class="tag">${escapeHtml(nameFor(m.client))}</span></span>`;
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
  const ids = [client.clientId, ...[...client.peers.keys()].filter((c) => c !== client!.clientId)];
  people.innerHTML = ids
    .filter((c) => c)
    .map((c, i) => {
      const you = i === 0 ? '<span class="you">you</span>' : '';
      return `<li data-client="${escapeHtml(c)}" style="--c:${colorFor(c)}"><span class="swatch"></span>${escapeHtml(nameFor(c))}${you}</li>`;
    })
    .join('');
}

function open(doc: string): void {
  binding?.unbind();
  client?.close();
  docInput.value = doc;
  document.title = `${doc} — coedit`;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const token = params().get('token') ?? undefined;
  client = new CoeditClient({ url: `${scheme}://${location.host}/ws`, doc, token });
  binding = bindTextarea(textarea, client);
  const c = client;
  c.on('status', (s) => {
    status.dataset.status = s;
    status.querySelector('.label')!.textContent = s;
    renderPeople();
  });
  c.on('change', () => {
    renderOverlay();
    meta.textContent = `revision ${c.state.rev}`;
  });
  c.on('presence', () => {
    renderOverlay();
    renderPeople();
  });
  c.on('error', (e) => {
    meta.textContent = `server: ${e.msg} (${e.code})`;
  });
  c.on('lost', (ops) => {
    meta.textContent = `${ops.length} offline edit(s) could not be merged (the document moved on too far)`;
  });
  (window as unknown as { coeditDemo: unknown }).coeditDemo = { client: c, textarea };
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
  const doc = params().get('doc') ?? DEFAULT_DOC;
  if (doc !== client?.doc && DOC_ID.test(doc)) open(doc);
});
textarea.addEventListener('scroll', () => (overlay.scrollTop = textarea.scrollTop));
textarea.addEventListener('input', renderOverlay);
window.addEventListener('resize', renderOverlay);

const initial = params().get('doc') ?? DEFAULT_DOC;
open(DOC_ID.test(initial) ? initial : DEFAULT_DOC);
