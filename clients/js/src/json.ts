// The JSON encoding (`switchyard.v1.json`): one JSON object per text frame.

import { fromBase64 } from "./base64.js";
import type { ClientFrame, Codec, ServerFrame } from "./frames.js";
import { noteWireData, pubDataText, utf8 } from "./wire_data.js";

export const jsonCodec: Codec = {
  subprotocol: "switchyard.v1.json",

  encode(frame: ClientFrame): string {
    const data = frame.publish?.data;
    if (data instanceof Uint8Array) {
      throw new TypeError('the JSON encoding carries JSON values only: use encoding "protobuf" for bytes');
    }
    return JSON.stringify(frame);
  },

  decode(message: string | ArrayBuffer | Uint8Array): ServerFrame {
    if (typeof message !== "string") throw new TypeError("a JSON connection got a binary frame");
    const frame = JSON.parse(message) as ServerFrame;
    const pubs = [frame.pub, ...(frame.subscribe?.publications ?? []), ...(frame.history?.publications ?? [])];
    for (const pub of pubs) {
      const raw = pub as { data_b64?: string; data?: unknown } | undefined;
      if (raw?.data_b64 !== undefined) {
        raw.data = fromBase64(raw.data_b64);
        delete raw.data_b64;
      }
    }
    const pub = frame.pub;
    if (pub) {
      // A delta is a JSON string; full data is the value's exact text (or
      // the bytes of a `data_b64`).
      noteWireData(pub, () => {
        if (pub.data instanceof Uint8Array) return pub.data;
        if (pub.delta) return utf8(pub.data as string);
        return utf8(pubDataText(message) ?? "");
      });
    }
    return frame;
  },
};
