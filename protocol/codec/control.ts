// Control-plane bodies (PROTOCOL.md section 7) are one MessagePack map each. This file holds
// the msgpack framing and the checked readers that turn an untrusted map into typed fields:
// a missing key, a wrong type or an out-of-range value is INVALID_REQUEST naming the key.

import { Packr } from "msgpackr";
import { ProtocolError } from "./errors.ts";
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

export function stringField(fields: Fields, key: string, maxBytes = 32_767): string {
  const value = fields[key];
  if (typeof value !== "string") throw bad(key, value, "must be a string");
  if (value.length > maxBytes) throw bad(key, `${value.slice(0, 40)}…`, `exceeds ${maxBytes}`);
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
