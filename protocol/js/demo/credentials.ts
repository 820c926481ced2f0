/**
 * Access tokens for the demo pages (`/` and `/richtext`), which never keep one in the address:
 * `#token=…` (a token) or `#token_url=…` (an endpoint of the application's backend that answers
 * a fresh token, asked with the browser's cookies) is read once, kept in this tab's
 * sessionStorage, and removed from the address with `history.replaceState`. Both pages use the
 * same keys, so a tab that has a credential for one page has it for the other.
 */
import type { TokenProvider } from '../src/token.js';

/** sessionStorage keys of the credentials taken from the address. */
export const TOKEN_KEY = 'coedit.token';
export const TOKEN_URL_KEY = 'coedit.tokenUrl';

/** The parameters in the address's fragment (`#doc=…&token=…`). */
export function params(): URLSearchParams {
  return new URLSearchParams(location.hash.slice(1));
}

export function stored(key: string): string | null {
  try {
    return sessionStorage.getItem(key);
  } catch {
    return null;
  }
}

export function store(key: string, value: string | null): void {
  try {
    if (value === null) sessionStorage.removeItem(key);
    else sessionStorage.setItem(key, value);
  } catch {
    // storage disabled: the credential lasts as long as the page
  }
}

/** Moves `token`/`token_url` from the address into sessionStorage (the address is what people
 * share: it must never carry a credential). */
export function takeCredentialsFromAddress(): void {
  const p = params();
  const token = p.get('token');
  const tokenUrl = p.get('token_url');
  if (token === null && tokenUrl === null) return;
  if (token !== null) {
    store(TOKEN_KEY, token);
    store(TOKEN_URL_KEY, null);
  }
  if (tokenUrl !== null) {
    store(TOKEN_URL_KEY, tokenUrl);
    store(TOKEN_KEY, null);
  }
  p.delete('token');
  p.delete('token_url');
  const rest = p.toString();
  history.replaceState(history.state, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
}

/** The token source: the backend endpoint (asked with the browser's cookies), or a token. */
export function tokenSource(): string | TokenProvider | undefined {
  const url = stored(TOKEN_URL_KEY);
  if (url) {
    return async () => {
      const r = await fetch(url, { credentials: 'include', cache: 'no-store' });
      if (!r.ok) throw new Error(`token endpoint answered ${r.status}`);
      const body = (await r.text()).trim();
      return body.startsWith('{') ? (JSON.parse(body) as { token: string }).token : body;
    };
  }
  return stored(TOKEN_KEY) ?? undefined;
}
