/**
 * Where the client's access tokens come from, and when to refresh them.
 *
 * A token is a fixed string or a provider, a function the client calls before every connection
 * (`hello`) and shortly before the current token expires (then it presents the new token on
 * the live connection with `auth`). The provider normally asks the application's backend over
 * the application's own authenticated session (a cookie), never takes it from a URL.
 *
 * Invariants:
 * - A provider's answer must be a non-empty string; anything else (a throw, a rejected promise,
 *   an empty or non-string value) is a failure the client counts and retries with backoff.
 * - Refreshes are never scheduled closer together than `minIntervalMs`, whatever the expiry
 *   and the clocks say, so a token that looks expired at once cannot cause a tight loop.
 */

/** A function returning a fresh access token. */
export type TokenProvider = () => string | Promise<string>;

/** When to refresh a token before it expires. */
export interface TokenRefreshOptions {
  /** Refresh at least this long before expiry (default 5000 ms). */
  marginMs?: number;
  /** … and at least this fraction of the remaining lifetime before it (default 0.1). */
  ratio?: number;
  /** Never refresh sooner than this after the previous token arrived (default 1000 ms). */
  minIntervalMs?: number;
}

/** Default `marginMs`. */
export const DEFAULT_REFRESH_MARGIN_MS = 5000;
/** Default `ratio`. */
export const DEFAULT_REFRESH_RATIO = 0.1;
/** Default `minIntervalMs`. */
export const DEFAULT_REFRESH_MIN_INTERVAL_MS = 1000;

/**
 * How long to wait before refreshing a token that expires in `remainingMs`: `margin` before
 * expiry, where `margin = max(marginMs, ratio × remainingMs)`, but not before half the remaining
 * lifetime has passed (a token shorter-lived than the margin is still used for a while), and
 * never sooner than `minIntervalMs`.
 */
export function refreshDelayMs(remainingMs: number, opts: TokenRefreshOptions = {}): number {
  const marginMs = opts.marginMs ?? DEFAULT_REFRESH_MARGIN_MS;
  const ratio = opts.ratio ?? DEFAULT_REFRESH_RATIO;
  const minInterval = opts.minIntervalMs ?? DEFAULT_REFRESH_MIN_INTERVAL_MS;
  const margin = Math.max(marginMs, ratio * remainingMs);
  return Math.max(minInterval, remainingMs - margin, remainingMs / 2);
}

/** A fixed token or a provider (see the module documentation). */
export class TokenSource {
  private source: string | TokenProvider | undefined;

  constructor(source: string | TokenProvider | undefined) {
    this.source = source;
  }

  /** Replaces the token or provider. */
  set(source: string | TokenProvider | undefined): void {
    this.source = source;
  }

  /** True when a new token can be asked for (a provider is set). */
  get refreshable(): boolean {
    return typeof this.source === 'function';
  }

  /** True when there is a token at all. */
  get present(): boolean {
    return this.source !== undefined;
  }

  /** The token to use now (calls the provider); rejects when the provider fails. */
  async get(): Promise<string | undefined> {
    const s = this.source;
    if (typeof s !== 'function') return s;
    const token = await s();
    if (typeof token !== 'string' || token.length === 0) {
      throw new Error('the token provider returned no token');
    }
    return token;
  }
}
