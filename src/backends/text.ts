/**
 * Strings kept exactly, lone surrogates included, by backends that store bytes.
 *
 * A JavaScript string is UTF-16 code units; one may hold a lone surrogate (an emoji cut in half
 * by `.slice()`), which UTF-8 cannot encode: strict encoders and decoders turn it into U+FFFD.
 * Its generalized UTF-8 (WTF-8) can: a lone surrogate is its own 3-byte sequence, and every
 * well-formed string has exactly its UTF-8 bytes, so data written before stays readable.
 *
 * Redis: strings that are not well-formed go out as WTF-8 Buffers (`toWire`) and values read
 * back as Buffers go through `readText`; key names escape lone surrogates (`keySegment`).
 *
 * SQLite: better-sqlite3 binds a string as the generalized UTF-8 of its UTF-16 code units (WTF-8: a
 * lone surrogate becomes its own 3-byte sequence, e.g. `\uD83D` is ED A0 BD; NUL is a plain 00
 * byte, bound with its length), so what is written is already exact, and files written by
 * every earlier release hold the same bytes. Reading a column back as a string, though,
 * decodes strict UTF-8 and turns each such sequence into U+FFFD. So the store reads text
 * columns as bytes (`CAST(col AS BLOB)`) and decodes them here: the native UTF-8 decoder when
 * the bytes are well-formed (every string without a lone surrogate), the WTF-8 decoder below
 * otherwise. test/sqlite.test.ts checks both the stored bytes and a file of the previous release.
 */

/** The string whose generalized UTF-8 is `bytes` (null stays null). */
export function readText(bytes: Buffer): string;
export function readText(bytes: Buffer | null): string | null;
export function readText(bytes: Buffer | null): string | null {
  if (bytes === null) return null;
  const text = bytes.toString('utf8');
  // U+FFFD in the result is either a real U+FFFD (EF BF BD) or bytes strict UTF-8 refused.
  return text.includes('\uFFFD') ? decodeWtf8(bytes) : text;
}

/** Decodes WTF-8 (UTF-8 that may encode lone surrogates); a byte no sequence explains becomes U+FFFD. */
export function decodeWtf8(bytes: Uint8Array): string {
  const units: number[] = [];
  let out = '';
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b0 = bytes[i]!;
    let cp = -1;
    let size = 1;
    if (b0 < 0x80) {
      cp = b0;
    } else if (b0 >= 0xc2 && b0 <= 0xdf) {
      const b1 = bytes[i + 1];
      if (b1 !== undefined && (b1 & 0xc0) === 0x80) {
        cp = ((b0 & 0x1f) << 6) | (b1 & 0x3f);
        size = 2;
      }
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
      const b1 = bytes[i + 1];
      const b2 = bytes[i + 2];
      // E0 needs A0..BF (no overlong forms); ED A0..BF are the surrogates WTF-8 allows.
      if (b1 !== undefined && b2 !== undefined && (b1 & 0xc0) === 0x80 && (b2 & 0xc0) === 0x80 && (b0 !== 0xe0 || b1 >= 0xa0)) {
        cp = ((b0 & 0x0f) << 12) | ((b1 & 0x3f) << 6) | (b2 & 0x3f);
        size = 3;
      }
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
      const b1 = bytes[i + 1];
      const b2 = bytes[i + 2];
      const b3 = bytes[i + 3];
      if (
        b1 !== undefined &&
        b2 !== undefined &&
        b3 !== undefined &&
        (b1 & 0xc0) === 0x80 &&
        (b2 & 0xc0) === 0x80 &&
        (b3 & 0xc0) === 0x80 &&
        (b0 !== 0xf0 || b1 >= 0x90) &&
        (b0 !== 0xf4 || b1 < 0x90)
      ) {
        cp = ((b0 & 0x07) << 18) | ((b1 & 0x3f) << 12) | ((b2 & 0x3f) << 6) | (b3 & 0x3f);
        size = 4;
      }
    }
    if (cp < 0) cp = 0xfffd;
    if (cp > 0xffff) {
      cp -= 0x10000;
      units.push(0xd800 | (cp >> 10), 0xdc00 | (cp & 0x3ff));
    } else {
      units.push(cp);
    }
    i += size;
    if (units.length >= 8192) {
      out += String.fromCharCode(...units);
      units.length = 0;
    }
  }
  return out + String.fromCharCode(...units);
}

/** `text` as Redis should get it: the string itself when well-formed, else its WTF-8 bytes. */
export function toWire(text: string): string | Buffer {
  return isWellFormed(text) ? text : encodeWtf8(text);
}

/** Whether `text` has no lone surrogate (String.prototype.isWellFormed, Node 20+). */
export function isWellFormed(text: string): boolean {
  return (text as string & { isWellFormed(): boolean }).isWellFormed();
}

/** The generalized UTF-8 of every code unit of `text` (a lone surrogate becomes its own 3 bytes). */
export function encodeWtf8(text: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (c < 0x80) bytes.push(c);
    else if (c < 0x800) bytes.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    else if (c < 0x10000) bytes.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    else bytes.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 0x3f), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
  }
  return Buffer.from(bytes);
}
