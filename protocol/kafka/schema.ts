// The declarative message schema and its compiler. Each Kafka message is written once as a list
// of fields (name, type, the versions it exists in, the versions it may be null in, its tag if
// it is a tagged field), after the public protocol guide; `compileStruct` turns one (fields,
// version) pair into a decoder and an encoder, once, and `codecFor` caches them.
//
//   { name: "topics", type: "[]", versions: "0+", nullable: "1+", fields: [
//       { name: "name", type: "string", versions: "0+" } ] }
//
// In a flexible version (from the message's `flexible` version on), strings, bytes and arrays
// use compact lengths and every struct ends with a tagged-fields section: unknown tags are
// skipped by their size, known ones decoded; a tagged field is written only when it is set.
// Record batches (`records`) stay opaque: decoded as a view of the request, encoded from a list
// of views of the log without a copy.

import { ProtocolError } from "../codec/errors.ts";
import { KafkaReader, KafkaWriter, concatChunks } from "./wire.ts";

export type Primitive =
  | "int8"
  | "int16"
  | "uint16"
  | "int32"
  | "int64"
  | "float64"
  | "bool"
  | "string"
  | "bytes"
  | "records"
  | "uuid";

export type Field = {
  name: string;
  /** A primitive, an array of one (`[]int32`), or `[]` (array of `fields`) / `{}` (a struct). */
  type: Primitive | `[]${Primitive}` | "[]" | "{}";
  /** The versions the field exists in: "0+", "3-5", "7". */
  versions: string;
  /** The versions in which the field may be null. */
  nullable?: string;
  /** A tagged field's tag (present in flexible versions only). */
  tag?: number;
  /** What a decoder yields when the field is absent from the version read. */
  default?: Value;
  fields?: readonly Field[];
};

export type Value =
  | number
  | string
  | boolean
  | null
  | Uint8Array
  | readonly Uint8Array[]
  | readonly Value[]
  | Struct;
export type Struct = { [name: string]: Value };

export type Message = {
  key: number;
  name: string;
  /** The versions sluice serves; a request outside them gets UNSUPPORTED_VERSION. */
  min: number;
  max: number;
  /** The first flexible version (Infinity when none is served). */
  flexible: number;
  request: readonly Field[];
  response: readonly Field[];
};

/** Whether `version` is in a range written as "N+", "N-M", "N" or "none". */
export function inVersions(range: string | undefined, version: number): boolean {
  if (range === undefined || range === "none") return false;
  if (range.endsWith("+")) return version >= Number(range.slice(0, -1));
  const dash = range.indexOf("-");
  if (dash === -1) return version === Number(range);
  return version >= Number(range.slice(0, dash)) && version <= Number(range.slice(dash + 1));
}

export type StructCodec = {
  decode(reader: KafkaReader): Struct;
  encode(writer: KafkaWriter, value: Struct): void;
};

type Step = {
  field: Field;
  nullable: boolean;
  read: (reader: KafkaReader) => Value;
  write: (writer: KafkaWriter, value: Value) => void;
};

const FIXED_BYTES: Partial<Record<Primitive, number>> = {
  int8: 1,
  int16: 2,
  uint16: 2,
  int32: 4,
  int64: 8,
  float64: 8,
  bool: 1,
  uuid: 16,
};

const ZERO_UUID = new Uint8Array(16);

function defaultOf(field: Field, nullable: boolean): Value {
  if (field.default !== undefined) return field.default;
  if (nullable) return null;
  if (field.type.startsWith("[]")) return [];
  switch (field.type) {
    case "string":
      return "";
    case "bool":
      return false;
    case "bytes":
      return new Uint8Array(0);
    case "records":
      return [];
    case "uuid":
      return ZERO_UUID;
    case "{}":
      return {};
    default:
      return 0;
  }
}

function primitiveReader(type: Primitive, flexible: boolean, what: string) {
  switch (type) {
    case "int8":
      return (r: KafkaReader) => r.int8(what);
    case "int16":
      return (r: KafkaReader) => r.int16(what);
    case "uint16":
      return (r: KafkaReader) => r.uint16(what);
    case "int32":
      return (r: KafkaReader) => r.int32(what);
    case "int64":
      return (r: KafkaReader) => r.int64(what);
    case "float64":
      return (r: KafkaReader) => r.float64(what);
    case "bool":
      return (r: KafkaReader) => r.bool(what);
    case "uuid":
      return (r: KafkaReader) => r.uuid(what);
    case "string":
      return (r: KafkaReader) => r.string(flexible, what);
    case "bytes":
    case "records":
      return (r: KafkaReader) => r.bytesView(flexible, what);
  }
}

function primitiveWriter(type: Primitive, flexible: boolean) {
  switch (type) {
    case "int8":
      return (w: KafkaWriter, v: Value) => w.int8(v as number);
    case "int16":
      return (w: KafkaWriter, v: Value) => w.int16(v as number);
    case "uint16":
      return (w: KafkaWriter, v: Value) => w.uint16(v as number);
    case "int32":
      return (w: KafkaWriter, v: Value) => w.int32(v as number);
    case "int64":
      return (w: KafkaWriter, v: Value) => w.int64(v as number);
    case "float64":
      return (w: KafkaWriter, v: Value) => w.float64(v as number);
    case "bool":
      return (w: KafkaWriter, v: Value) => w.bool(v as boolean);
    case "uuid":
      return (w: KafkaWriter, v: Value) => w.raw(v as Uint8Array);
    case "string":
      return (w: KafkaWriter, v: Value) => w.string(v as string | null, flexible);
    case "bytes":
      return (w: KafkaWriter, v: Value) => w.bytes(v as Uint8Array | null, flexible);
    case "records":
      return (w: KafkaWriter, v: Value) => w.views(asViews(v), flexible);
  }
}

function asViews(value: Value): readonly Uint8Array[] | null {
  if (value === null) return null;
  if (value instanceof Uint8Array) return [value];
  return value as readonly Uint8Array[];
}

/** The fewest bytes one item of an array can take, so a count can be checked before reading. */
function itemBytesMin(field: Field, version: number, flexible: boolean): number {
  if (field.type !== "[]") {
    const fixed = FIXED_BYTES[field.type.slice(2) as Primitive];
    return fixed ?? (flexible ? 1 : 2);
  }
  let size = flexible ? 1 : 0;
  for (const inner of field.fields ?? []) {
    if (!inVersions(inner.versions, version) || inner.tag !== undefined) continue;
    const fixed = FIXED_BYTES[inner.type as Primitive];
    size += fixed ?? 1;
  }
  return Math.max(1, size);
}

function arrayStep(field: Field, version: number, flexible: boolean, nullable: boolean): Step {
  const what = field.name;
  const item =
    field.type === "[]"
      ? compileStruct(field.fields ?? [], version, flexible)
      : {
          decode: primitiveReader(field.type.slice(2) as Primitive, flexible, `${what}[]`),
          encode: primitiveWriter(field.type.slice(2) as Primitive, flexible),
        };
  const minBytes = itemBytesMin(field, version, flexible);
  return {
    field,
    nullable,
    read(reader) {
      const n = reader.length(flexible, true, minBytes, what);
      if (n === -1) {
        if (!nullable) throw ProtocolError.invalid(`${what} is null but not nullable`);
        return null;
      }
      const items: Value[] = new Array(n);
      for (let i = 0; i < n; i++) items[i] = item.decode(reader);
      return items;
    },
    write(writer, value) {
      if (value === null) {
        writer.length(-1, flexible, true);
        return;
      }
      const items = value as readonly Value[];
      writer.length(items.length, flexible, true);
      for (const entry of items) item.encode(writer, entry as never);
    },
  };
}

function stepFor(field: Field, version: number, flexible: boolean): Step {
  const nullable = inVersions(field.nullable, version);
  if (field.type.startsWith("[]")) return arrayStep(field, version, flexible, nullable);
  if (field.type === "{}") {
    const inner = compileStruct(field.fields ?? [], version, flexible);
    if (!nullable) {
      return {
        field,
        nullable,
        read: (reader) => inner.decode(reader),
        write: (writer, value) => inner.encode(writer, value as Struct),
      };
    }
    // A nullable struct is preceded by an int8: -1 for null, 1 for present.
    return {
      field,
      nullable,
      read: (reader) => (reader.int8(field.name) < 0 ? null : inner.decode(reader)),
      write: (writer, value) => {
        if (value === null) writer.int8(-1);
        else inner.encode(writer.int8(1), value as Struct);
      },
    };
  }
  const read = primitiveReader(field.type as Primitive, flexible, field.name);
  const checked =
    nullable || (field.type !== "string" && field.type !== "bytes" && field.type !== "records")
      ? read
      : (reader: KafkaReader) => {
          const value = read(reader);
          if (value === null) throw ProtocolError.invalid(`${field.name} is null but not nullable`);
          return value;
        };
  return {
    field,
    nullable,
    read: checked,
    write: primitiveWriter(field.type as Primitive, flexible),
  };
}

function readTagged(reader: KafkaReader, tagged: Map<number, Step>, out: Struct): void {
  const count = reader.length(true, true, 2, "tagged fields") + 1;
  let previous = -1;
  for (let i = 0; i < count; i++) {
    const tag = reader.uvarint("tag");
    if (tag <= previous) throw ProtocolError.invalid(`tag ${tag} follows tag ${previous}`);
    previous = tag;
    const size = reader.uvarint("tagged field size");
    if (size > reader.remaining) {
      throw ProtocolError.invalid(`tagged field ${tag} of ${size} bytes exceeds what is left`);
    }
    const step = tagged.get(tag);
    if (step === undefined) {
      reader.skip(size, `tagged field ${tag}`);
      continue;
    }
    const inner = new KafkaReader(reader.bytes, reader.position, reader.position + size);
    out[step.field.name] = step.read(inner);
    reader.skip(size, `tagged field ${tag}`);
  }
}

function writeTagged(writer: KafkaWriter, tagged: Map<number, Step>, value: Struct): void {
  const present: [number, Uint8Array][] = [];
  for (const [tag, step] of tagged) {
    const v = value[step.field.name];
    if (v === undefined || v === null) continue;
    const inner = new KafkaWriter(32);
    step.write(inner, v);
    present.push([tag, concatChunks(inner.finish())]);
  }
  present.sort((a, b) => a[0] - b[0]);
  writer.uvarint(present.length);
  for (const [tag, bytes] of present) writer.uvarint(tag).uvarint(bytes.length).raw(bytes);
}

/** The decoder and encoder of one struct at one version. */
export function compileStruct(
  fields: readonly Field[],
  version: number,
  flexible: boolean,
): StructCodec {
  const steps: Step[] = [];
  const tagged = new Map<number, Step>();
  const absent: [string, Value][] = [];
  for (const field of fields) {
    const present = inVersions(field.versions, version) && (field.tag === undefined || flexible);
    const step = present ? stepFor(field, version, flexible) : undefined;
    if (step === undefined) absent.push([field.name, defaultOf(field, false)]);
    else if (field.tag !== undefined) {
      tagged.set(field.tag, step);
      absent.push([field.name, defaultOf(field, step.nullable)]);
    } else steps.push(step);
  }
  return {
    decode(reader) {
      const out: Struct = {};
      for (const [name, value] of absent) out[name] = value;
      for (const step of steps) out[step.field.name] = step.read(reader);
      if (flexible) readTagged(reader, tagged, out);
      return out;
    },
    encode(writer, value) {
      for (const step of steps) {
        const v = value[step.field.name];
        step.write(writer, v === undefined ? defaultOf(step.field, step.nullable) : v);
      }
      if (flexible) writeTagged(writer, tagged, value);
    },
  };
}

export type MessageCodec = { request: StructCodec; response: StructCodec; flexible: boolean };

const compiled = new Map<string, MessageCodec>();

/** The compiled codecs of `message` at `version` (compiled on first use, then kept). */
export function codecFor(message: Message, version: number): MessageCodec {
  const id = `${message.key}/${version}`;
  let codec = compiled.get(id);
  if (codec === undefined) {
    const flexible = version >= message.flexible;
    codec = {
      request: compileStruct(message.request, version, flexible),
      response: compileStruct(message.response, version, flexible),
      flexible,
    };
    compiled.set(id, codec);
  }
  return codec;
}
