/**
 * Positions in Unicode scalar values (what the server counts) and in UTF-16 code units (what
 * JavaScript strings and textareas count). A character outside the Basic Multilingual Plane
 * (an emoji, a rare CJK ideograph) is one scalar value and two UTF-16 units.
 */

/** True for the first half of a surrogate pair. */
export function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/** True for the second half of a surrogate pair. */
export function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

/** The number of Unicode scalar values in `s`. */
export function uniLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    if (!(isLowSurrogate(s.charCodeAt(i)) && i > 0 && isHighSurrogate(s.charCodeAt(i - 1)))) {
      n++;
    }
  }
  return n;
}

/** The scalar-value position of UTF-16 offset `pos` in `s` (an offset inside a pair counts
 * as the pair's start). */
export function utf16ToUni(s: string, pos: number): number {
  const end = Math.max(0, Math.min(pos, s.length));
  let n = 0;
  for (let i = 0; i < end; i++) {
    const c = s.charCodeAt(i);
    if (isHighSurrogate(c) && i + 1 < s.length && isLowSurrogate(s.charCodeAt(i + 1))) {
      if (i + 1 >= end) break;
      i++;
    }
    n++;
  }
  return n;
}

/** The UTF-16 offset of scalar-value position `pos` in `s` (clamped to the end). */
export function uniToUtf16(s: string, pos: number): number {
  let i = 0;
  for (let n = 0; n < pos && i < s.length; n++) {
    const c = s.charCodeAt(i);
    i += isHighSurrogate(c) && i + 1 < s.length && isLowSurrogate(s.charCodeAt(i + 1)) ? 2 : 1;
  }
  return i;
}
