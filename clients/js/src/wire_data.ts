// A publication's data as it came on the wire: the bytes a delta applies
// to (and, for a delta, the delta's own bytes). The codecs note them for
// each `pub` push; only subscriptions with deltas ever read them.

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const wire = new WeakMap<object, () => Uint8Array>();

/** Notes how to get `publication`'s data bytes (called by the codecs). */
export function noteWireData(publication: object, bytes: () => Uint8Array): void {
  wire.set(publication, bytes);
}

/** The data bytes of a `pub` push, as the server sent them. */
export function wireData(publication: object): Uint8Array | undefined {
  return wire.get(publication)?.();
}

/** Bytes as the SDK hands them out: the JSON value they hold, or the bytes. */
export function payload(bytes: Uint8Array): unknown {
  if (bytes.length === 0) return null;
  try {
    return JSON.parse(decoder.decode(bytes)) as unknown;
  } catch {
    return bytes;
  }
}

/** UTF-8 of a string. */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

const SPACE = " \t\n\r";

function skipSpace(text: string, at: number): number {
  while (at < text.length && SPACE.includes(text.charAt(at))) at++;
  return at;
}

function skipString(text: string, at: number): number {
  for (at++; at < text.length; at++) {
    const c = text.charCodeAt(at);
    if (c === 0x5c) at++;
    else if (c === 0x22) return at + 1;
  }
  throw new SyntaxError("unterminated string");
}

function skipValue(text: string, at: number): number {
  const first = text.charAt(at);
  if (first === '"') return skipString(text, at);
  if (first !== "{" && first !== "[") {
    while (at < text.length && !",}] \t\n\r".includes(text.charAt(at))) at++;
    return at;
  }
  let depth = 0;
  while (at < text.length) {
    const c = text.charAt(at);
    if (c === '"') {
      at = skipString(text, at);
      continue;
    }
    if (c === "{" || c === "[") depth++;
    else if ((c === "}" || c === "]") && --depth === 0) return at + 1;
    at++;
  }
  throw new SyntaxError("unterminated value");
}

/** Where the value of `key` in the object at `at` starts and ends. */
function member(text: string, at: number, key: string): [number, number] | undefined {
  at = skipSpace(text, at);
  if (text.charAt(at) !== "{") return undefined;
  at++;
  for (;;) {
    at = skipSpace(text, at);
    if (text.charAt(at) !== '"') return undefined;
    const keyEnd = skipString(text, at);
    const name = JSON.parse(text.slice(at, keyEnd)) as string;
    at = skipSpace(text, keyEnd) + 1; // past ':'
    const start = skipSpace(text, at);
    const end = skipValue(text, start);
    if (name === key) return [start, end];
    at = skipSpace(text, end);
    if (text.charAt(at) !== ",") return undefined;
    at++;
  }
}

/** The text of `pub.data` in a JSON frame, exactly as sent. */
export function pubDataText(frame: string): string | undefined {
  const pub = member(frame, 0, "pub");
  const data = pub && member(frame, pub[0], "data");
  return data && frame.slice(data[0], data[1]);
}
