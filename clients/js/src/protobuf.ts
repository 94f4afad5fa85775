// The protobuf encoding (`switchyard.v1.proto`): one message per binary
// frame, with types generated from proto/ at build time. Loaded only by
// clients that ask for it, so the JSON-only bundle stays small.
//
// Frames go through protobuf's own JSON form (proto field names), which has
// the same shape as the protocol's JSON but for 64-bit numbers (strings
// there) and bytes (base64 there): those are converted on the way.

import { fromBinary, fromJson, toBinary, toJson, type JsonValue } from "@bufbuild/protobuf";
import { fromBase64, toBase64 } from "./base64.js";
import type { ClientFrame, Codec, ServerFrame } from "./frames.js";
import { ClientFrameSchema, ServerFrameSchema } from "./gen/switchyard/v1/client_pb.js";
import { noteWireData, payload } from "./wire_data.js";

const encoder = new TextEncoder();

/** Rewrites protobuf's JSON form into the protocol's: numbers and values. */
function normalize(value: unknown, key = ""): unknown {
  if (Array.isArray(value)) return value.map((v) => normalize(v));
  if (value === null || typeof value !== "object") {
    if (typeof value === "string" && key === "offset") return Number(value);
    if (typeof value === "string" && (key === "data" || key === "info")) return payload(fromBase64(value));
    return value;
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    // Implicit defaults are emitted: leave out the ones JSON leaves out.
    if (k === "delta" && v === false) continue;
    if (k === "tags") {
      // Strings as they are: a tag named `offset` or `data` is no field.
      if (v !== null && typeof v === "object" && Object.keys(v).length > 0) out[k] = v;
      continue;
    }
    out[k] = normalize(v, k);
  }
  return out;
}

export const protobufCodec: Codec = {
  subprotocol: "switchyard.v1.proto",

  encode(frame: ClientFrame): Uint8Array {
    const json = JSON.parse(JSON.stringify(frame)) as Record<string, unknown>;
    // `data` is bytes in protobuf: a JSON value's text, or the bytes given.
    for (const kind of ["publish", "rpc", "connect"] as const) {
      const command = frame[kind];
      if (!command || command.data === undefined) continue;
      const data = command.data;
      const bytes = data instanceof Uint8Array ? data : encoder.encode(JSON.stringify(data));
      (json[kind] as Record<string, unknown>).data = toBase64(bytes);
    }
    return toBinary(ClientFrameSchema, fromJson(ClientFrameSchema, json as JsonValue));
  },

  decode(message: string | ArrayBuffer | Uint8Array): ServerFrame {
    if (typeof message === "string") throw new TypeError("a protobuf connection got a text frame");
    const bytes = message instanceof Uint8Array ? message : new Uint8Array(message);
    const frame = fromBinary(ServerFrameSchema, bytes);
    const json = toJson(ServerFrameSchema, frame, { useProtoFieldName: true, alwaysEmitImplicit: true });
    const normalized = normalize(json) as ServerFrame;
    if (normalized.pub && frame.message.case === "pub") {
      const data = frame.message.value.data;
      noteWireData(normalized.pub, () => data);
    }
    return normalized;
  },
};
