/**
 * How the demo page tells participants apart: a colour and a display name per client id, with
 * no DOM access (unit-tested in `test/demo.test.ts`).
 *
 * Invariants:
 * - Colours come from a fixed palette of clearly distinct hues. Each id prefers the slot its
 *   hash picks; ids that prefer a taken slot move to the next free one, in an order that only
 *   depends on the set of ids, so every page that sees the same participants shows the same
 *   colours, and up to `PALETTE.length` participants never share one.
 * - A colour the participant's user metadata names (the token's `color` claim) wins.
 */

/** Caret colours: distinct hues that stay readable under white label text. */
export const PALETTE: readonly string[] = [
  '#d62728', // red
  '#1f77b4', // blue
  '#2ca02c', // green
  '#9467bd', // purple
  '#e8710a', // orange
  '#8c564b', // brown
  '#d6339c', // pink
  '#0f8b99', // teal
  '#393b79', // navy
  '#7a7a0f', // olive
];

/** A well-mixed 32-bit hash of a string (FNV-1a, then murmur3's finalizer). */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Colours for a set of client ids (see the module invariants); `fixed` holds colours the
 * participants chose (user metadata), which are used as they are. */
export function assignColors(
  ids: Iterable<string>,
  fixed: ReadonlyMap<string, string | undefined> = new Map(),
): Map<string, string> {
  const out = new Map<string, string>();
  const used = new Set<number>();
  const free: string[] = [];
  for (const id of new Set(ids)) {
    const own = fixed.get(id);
    if (own) {
      out.set(id, own);
      const slot = PALETTE.indexOf(own.toLowerCase());
      if (slot >= 0) used.add(slot);
    } else {
      free.push(id);
    }
  }
  // Deterministic order: by preferred slot, then id.
  free.sort((a, b) => hash32(a) % PALETTE.length - (hash32(b) % PALETTE.length) || (a < b ? -1 : a > b ? 1 : 0));
  for (const id of free) {
    let slot = hash32(id) % PALETTE.length;
    for (let i = 0; i < PALETTE.length && used.has(slot); i++) slot = (slot + 1) % PALETTE.length;
    used.add(slot);
    out.set(id, PALETTE[slot]);
  }
  return out;
}

/** The name shown for a participant: its user metadata's name, else "Guest" and the end of its
 * client id. */
export function nameFor(client: string, user?: { name?: string }): string {
  return user?.name || `Guest ${client.slice(-4).toUpperCase()}`;
}
