// Fossil deltas (the format of the Fossil SCM): applying the deltas the
// server sends for subscriptions with `delta: "fossil"`. Only applying is
// needed here; the server makes them. A delta that does not apply throws,
// and the subscription recovers instead of handing out wrong data.

const DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~";
const VALUES = new Int8Array(128).fill(-1);
for (let i = 0; i < DIGITS.length; i++) VALUES[DIGITS.charCodeAt(i)] = i;

class Reader {
  at = 0;
  constructor(readonly bytes: Uint8Array) {}

  next(): number {
    if (this.at >= this.bytes.length) throw new Error("malformed delta");
    return this.bytes[this.at++] as number;
  }

  /** A base-64 integer of one digit or more. */
  int(): number {
    const start = this.at;
    let n = 0;
    while (this.at < this.bytes.length) {
      const byte = this.bytes[this.at] as number;
      const digit = byte < 128 ? (VALUES[byte] as number) : -1;
      if (digit < 0) break;
      n = n * 64 + digit;
      if (n > Number.MAX_SAFE_INTEGER / 64) throw new Error("malformed delta");
      this.at++;
    }
    if (this.at === start) throw new Error("malformed delta");
    return n;
  }
}

/** The sum of the big-endian 32-bit words, the last padded with zeros. */
function checksum(bytes: Uint8Array): number {
  let sum = 0;
  let i = 0;
  for (; i + 4 <= bytes.length; i += 4) {
    sum =
      (sum +
        (((bytes[i] as number) << 24) |
          ((bytes[i + 1] as number) << 16) |
          ((bytes[i + 2] as number) << 8) |
          (bytes[i + 3] as number))) >>>
      0;
  }
  let last = 0;
  for (let shift = 24; i < bytes.length; i++, shift -= 8) last |= (bytes[i] as number) << shift;
  return (sum + (last >>> 0)) >>> 0;
}

/** Applies `delta` to `source`; throws if it does not apply or the result would pass `maxLength`. */
export function applyDelta(source: Uint8Array, delta: Uint8Array, maxLength: number): Uint8Array {
  const reader = new Reader(delta);
  const length = reader.int();
  if (length > maxLength) throw new Error("delta target too large");
  if (reader.next() !== 0x0a) throw new Error("malformed delta");
  const out = new Uint8Array(length);
  let written = 0;
  for (;;) {
    const count = reader.int();
    const command = reader.next();
    if (command === 0x40 /* @ */) {
      const offset = reader.int();
      if (reader.next() !== 0x2c /* , */) throw new Error("malformed delta");
      if (offset + count > source.length || written + count > length) throw new Error("delta out of range");
      out.set(source.subarray(offset, offset + count), written);
      written += count;
    } else if (command === 0x3a /* : */) {
      if (reader.at + count > delta.length || written + count > length) throw new Error("delta out of range");
      out.set(delta.subarray(reader.at, reader.at + count), written);
      reader.at += count;
      written += count;
    } else if (command === 0x3b /* ; */) {
      if (written !== length || checksum(out) !== count) throw new Error("delta does not match its source");
      return out;
    } else {
      throw new Error("malformed delta");
    }
  }
}
