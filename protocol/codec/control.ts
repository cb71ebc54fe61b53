// Control-plane bodies (PROTOCOL.md section 7) are one MessagePack map each. This file holds
// the msgpack framing, each API's limits on a body (checked by msgpack_scan.ts before msgpackr
// decodes it), and the checked readers that turn an untrusted map into typed fields: a missing
// key, a wrong type or an out-of-range value is INVALID_REQUEST naming the key.

import { Packr } from "msgpackr";
import { assert } from "../../record/mod.ts";
import { ProtocolError } from "./errors.ts";
import { API, type ApiName } from "./frames.ts";
import {
  MSGPACK_DEPTH_MAX_LIMIT,
  MSGPACK_KEYS_MAX_LIMIT,
  type MsgpackLimits,
  scanMsgpack,
} from "./msgpack_scan.ts";
import type { Reader, Writer } from "./wire.ts";

// Plain maps and arrays only (no msgpackr record extension), so any MessagePack reader works.
// int64/uint64 read as numbers (msgpackr's default is BigInt, which intField would reject):
// the spec allows any integer type; a value past 2^53 reads as an unsafe number and is refused.
const packr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  moreTypes: false,
  int64AsType: "number",
});

export type Fields = Record<string, unknown>;

export type ControlApiName = Exclude<
  ApiName,
  | "Handshake"
  | "Produce"
  | "Fetch"
  | "QueueFetch"
  | "QueueAck"
  | "ExchangePublish"
  | "SaslHandshake"
  | "SaslAuthenticate"
>;

const KIB = 1024;
const MIB = 1024 * KIB;

/**
 * Each control API's limits on its request body (PROTOCOL.md section 8), the most the server
 * allows; its own `controlBody...Max` settings may lower the first three (and do by default:
 * 32,768 entries). They bound the work of decoding one body. msgpackr's cost per entry depends
 * on the shape, from 0.1 µs (small integers) to 0.5 µs and more (maps of keys never seen
 * before), so 32,768 entries of at most 64 distinct keys decode in a few milliseconds, and the
 * common requests (a heartbeat, a commit of a few offsets) in a few microseconds. 32,768
 * entries hold a commit of 6,500 offsets or list offsets of 10,900 partitions. Depths are
 * the deepest body the API's grammar allows, plus room for keys added later.
 */
export const CONTROL_BODY_LIMITS: Readonly<Record<ControlApiName, Readonly<MsgpackLimits>>> =
  Object.freeze({
    Metadata: { bytesMax: MIB, depthMax: 4, entriesMax: 16_384, keysMax: 64 },
    CreateTopics: { bytesMax: MIB, depthMax: 6, entriesMax: 16_384, keysMax: 64 },
    DeleteTopics: { bytesMax: MIB, depthMax: 4, entriesMax: 16_384, keysMax: 64 },
    ListOffsets: { bytesMax: 4 * MIB, depthMax: 6, entriesMax: 65_536, keysMax: 64 },
    OffsetCommit: { bytesMax: 4 * MIB, depthMax: 5, entriesMax: 65_536, keysMax: 64 },
    OffsetFetch: { bytesMax: MIB, depthMax: 5, entriesMax: 65_536, keysMax: 64 },
    GroupHeartbeat: { bytesMax: MIB, depthMax: 4, entriesMax: 16_384, keysMax: 64 },
    DescribeGroup: { bytesMax: 4 * KIB, depthMax: 3, entriesMax: 16, keysMax: 16 },
    InitProducerId: { bytesMax: 4 * KIB, depthMax: 3, entriesMax: 16, keysMax: 16 },
    Stats: { bytesMax: 4 * KIB, depthMax: 3, entriesMax: 16, keysMax: 16 },
    QueueDeclare: { bytesMax: 4 * KIB, depthMax: 3, entriesMax: 64, keysMax: 32 },
    QueueDelete: { bytesMax: 4 * KIB, depthMax: 3, entriesMax: 16, keysMax: 16 },
    QueuePurge: { bytesMax: 4 * KIB, depthMax: 3, entriesMax: 16, keysMax: 16 },
    QueueList: { bytesMax: MIB, depthMax: 4, entriesMax: 16_384, keysMax: 64 },
    QueueJoin: { bytesMax: 4 * KIB, depthMax: 3, entriesMax: 16, keysMax: 16 },
    QueueLeave: { bytesMax: 4 * KIB, depthMax: 3, entriesMax: 16, keysMax: 16 },
    ExchangeDeclare: { bytesMax: 4 * KIB, depthMax: 3, entriesMax: 16, keysMax: 16 },
    ExchangeDelete: { bytesMax: 4 * KIB, depthMax: 3, entriesMax: 16, keysMax: 16 },
    ExchangeList: { bytesMax: 4 * KIB, depthMax: 3, entriesMax: 16, keysMax: 16 },
    ExchangeBind: { bytesMax: 160 * KIB, depthMax: 4, entriesMax: 256, keysMax: 96 },
    ExchangeUnbind: { bytesMax: 160 * KIB, depthMax: 4, entriesMax: 256, keysMax: 96 },
    AlterSecurity: { bytesMax: 16 * KIB, depthMax: 4, entriesMax: 256, keysMax: 32 },
    DescribeSecurity: { bytesMax: 4 * KIB, depthMax: 3, entriesMax: 16, keysMax: 16 },
    ListGroups: { bytesMax: 4 * KIB, depthMax: 3, entriesMax: 16, keysMax: 16 },
    AlterTopicConfigs: { bytesMax: 4 * KIB, depthMax: 4, entriesMax: 64, keysMax: 32 },
  });

/** What the server's settings may lower: every limit but the distinct keys. */
export type ControlBodyCaps = Omit<MsgpackLimits, "keysMax">;

const CONTROL_LIMITS_BY_KEY = new Map<number, Readonly<MsgpackLimits>>(
  Object.entries(CONTROL_BODY_LIMITS).map(([name, limits]) => [API[name as ApiName], limits]),
);

for (const limits of CONTROL_LIMITS_BY_KEY.values()) {
  assert(limits.depthMax <= MSGPACK_DEPTH_MAX_LIMIT, "a control API's depth fits the scan");
  assert(limits.keysMax <= MSGPACK_KEYS_MAX_LIMIT, "a control API's keys fit the scan");
}

/** The body limits of a control API, each capped by `caps`; undefined for other API keys. */
export function controlBodyLimits(
  apiKey: number,
  caps: Readonly<ControlBodyCaps>,
): MsgpackLimits | undefined {
  const limits = CONTROL_LIMITS_BY_KEY.get(apiKey);
  if (limits === undefined) return undefined;
  return {
    bytesMax: Math.min(limits.bytesMax, caps.bytesMax),
    depthMax: Math.min(limits.depthMax, caps.depthMax),
    entriesMax: Math.min(limits.entriesMax, caps.entriesMax),
    keysMax: limits.keysMax,
  };
}

/** Checks the rest of the frame against `limits` without decoding it (msgpack_scan.ts). */
export function checkMsgpackBody(reader: Reader, limits: MsgpackLimits, what: string): void {
  scanMsgpack(reader.bytes.subarray(reader.position, reader.end), limits, what);
}

export function writeMsgpack(writer: Writer, value: unknown): void {
  writer.raw(packr.pack(value));
}

/** Reads the rest of the frame as one msgpack map. */
export function readMsgpack(reader: Reader, what: string): Fields {
  const bytes = reader.raw(reader.remaining, what);
  let value: unknown;
  try {
    value = packr.unpack(bytes);
  } catch (error) {
    throw ProtocolError.invalid(`${what} is not valid MessagePack: ${(error as Error).message}`);
  }
  if (!isPlainMap(value)) throw ProtocolError.invalid(`${what} must be a MessagePack map`);
  return value;
}

/** A decoded msgpack map: a plain object (msgpackr decodes the reserved 0xC1 to an object too). */
function isPlainMap(value: unknown): value is Fields {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

function bad(key: string, value: unknown, rule: string): ProtocolError {
  let shown: string;
  try {
    shown = JSON.stringify(value) ?? String(value);
  } catch {
    shown = String(value);
  }
  return ProtocolError.invalid(`${key} = ${shown.slice(0, 200)} ${rule}`);
}

/** Bytes of `value` in UTF-8, without encoding it (a lone surrogate counts as U+FFFD's 3). */
export function utf8Length(value: string): number {
  let bytes = value.length;
  for (let i = 0; i < value.length; i++) {
    const unit = value.charCodeAt(i);
    if (unit < 0x80) continue;
    if (unit < 0x800) bytes += 1;
    else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < value.length) {
      const next = value.charCodeAt(i + 1);
      // A surrogate pair: 4 bytes for 2 code units.
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 2;
        i++;
      } else bytes += 2;
    } else bytes += 2;
  }
  return bytes;
}

export function stringField(fields: Fields, key: string, maxBytes = 32_767): string {
  const value = fields[key];
  if (typeof value !== "string") throw bad(key, value, "must be a string");
  // A quick bound first: a string of more than maxBytes code units has more bytes too.
  if (value.length > maxBytes || utf8Length(value) > maxBytes) {
    throw bad(key, `${value.slice(0, 40)}…`, `exceeds ${maxBytes} bytes`);
  }
  return value;
}

export function optionalString(fields: Fields, key: string, maxBytes = 32_767): string | null {
  const value = fields[key];
  if (value === undefined || value === null) return null;
  return stringField(fields, key, maxBytes);
}

export function intField(
  fields: Fields,
  key: string,
  range: { min: number; max: number; default?: number },
): number {
  const value = fields[key];
  if (value === undefined && range.default !== undefined) return range.default;
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    throw bad(key, value, "must be an integer");
  }
  if (value < range.min || value > range.max) {
    throw bad(key, value, `must be in [${range.min}, ${range.max}]`);
  }
  return value;
}

export function arrayField(fields: Fields, key: string, maxItems: number): unknown[] {
  const value = fields[key];
  if (!Array.isArray(value)) throw bad(key, value, "must be an array");
  if (value.length > maxItems) throw bad(key, `[${value.length} items]`, `exceeds ${maxItems}`);
  return value;
}

export function optionalArray(fields: Fields, key: string, maxItems: number): unknown[] | null {
  const value = fields[key];
  if (value === undefined || value === null) return null;
  return arrayField(fields, key, maxItems);
}

export function mapItem(value: unknown, what: string): Fields {
  if (!isPlainMap(value)) throw bad(what, value, "must be a map");
  return value;
}

export function stringItems(values: unknown[], what: string): string[] {
  return values.map((value) => {
    if (typeof value !== "string") throw bad(what, value, "must be a string");
    return value;
  });
}

export function intItems(values: unknown[], what: string, max: number): number[] {
  return values.map((value) => {
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0 || value > max) {
      throw bad(what, value, `must be an integer in [0, ${max}]`);
    }
    return value;
  });
}
