// How `sluice consume` prints a record, in one of three modes:
//
//   default      the value, then a newline (INTERFACES.md); a null value is an empty line
//   --format F   kcat's -f tokens: %t topic, %p partition, %o offset, %k key, %s value,
//                %S value size in bytes, %K key size, %T timestamp (ms), %h headers
//                (k=v,k=v), %% a percent sign, \n \t \\ escapes. Like kcat, nothing is
//                added: end F with \n for one record a line.
//   --json       one JSON object a line: {topic, partition, offset, timestamp, key, value,
//                headers: [{key, value}]}; a key, value or header value that is not valid
//                UTF-8 is padded standard base64 (RFC 4648 section 4), flagged by
//                keyEncoding / valueEncoding: "base64" (for a header, its own
//                valueEncoding). A null key or value is null.
//
// In the two text modes a value that is not valid UTF-8 is printed with each byte that is not
// part of a valid UTF-8 sequence, and each control character, as \xNN (and a backslash as \\
// in that value only, so the escapes cannot be confused with the value's own text); consume
// says so once on stderr and points to --json for the exact bytes. Valid UTF-8 is printed as
// it is.

import type { ConsumerRecord } from "../protocol/client/mod.ts";
import { UsageError } from "./_args.ts";

const strict = new TextDecoder("utf-8", { fatal: true });

/** The text of valid UTF-8, or undefined. */
export function utf8OrUndefined(bytes: Uint8Array): string | undefined {
  try {
    return strict.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Length of the valid UTF-8 sequence starting at `i`, or 0 when the byte there starts none. */
function sequenceLength(bytes: Uint8Array, i: number): number {
  const b = bytes[i]!;
  if (b < 0x80) return 1;
  const length =
    b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
  if (length === 0 || i + length > bytes.length) return 0;
  return utf8OrUndefined(bytes.subarray(i, i + length)) === undefined ? 0 : length;
}

/** Bytes as text: valid UTF-8 as is; otherwise invalid bytes as \xNN and backslashes as \\. */
export function safeText(bytes: Uint8Array): { text: string; escaped: boolean } {
  const text = utf8OrUndefined(bytes);
  if (text !== undefined) return { text, escaped: false };
  let out = "";
  let i = 0;
  while (i < bytes.length) {
    const length = sequenceLength(bytes, i);
    const control = length === 1 && (bytes[i]! < 0x20 || bytes[i] === 0x7f);
    if (length === 0 || control) {
      out += `\\x${bytes[i]!.toString(16).padStart(2, "0")}`;
      i += 1;
    } else {
      const chunk = strict.decode(bytes.subarray(i, i + length));
      out += chunk === "\\" ? "\\\\" : chunk;
      i += length;
    }
  }
  return { text: out, escaped: true };
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/** `{ [name]: text }` or, for bytes that are not UTF-8, base64 plus `[name]Encoding`. */
function jsonBytes(name: string, bytes: Uint8Array | null): Record<string, string | null> {
  if (bytes === null) return { [name]: null };
  const text = utf8OrUndefined(bytes);
  if (text !== undefined) return { [name]: text };
  return { [name]: base64(bytes), [`${name}Encoding`]: "base64" };
}

export function recordJson(record: ConsumerRecord): string {
  return JSON.stringify({
    topic: record.topic,
    partition: record.partition,
    offset: record.offset,
    timestamp: record.timestamp,
    ...jsonBytes("key", record.key),
    ...jsonBytes("value", record.value),
    headers: record.headers.map((h) => ({ key: h.key, ...jsonBytes("value", h.value) })),
  });
}

/** Set when a printed value had bytes escaped. */
type Escapes = { found: boolean };

type Piece = string | ((record: ConsumerRecord, escaped: Escapes) => string);

const TOKENS = "tpokKsSTh%";

function textOf(bytes: Uint8Array | null, escaped: Escapes): string {
  if (bytes === null) return "";
  const safe = safeText(bytes);
  if (safe.escaped) escaped.found = true;
  return safe.text;
}

function token(char: string): Piece {
  switch (char) {
    case "t":
      return (r) => r.topic;
    case "p":
      return (r) => String(r.partition);
    case "o":
      return (r) => String(r.offset);
    case "k":
      return (r, e) => textOf(r.key, e);
    case "K":
      return (r) => String(r.key === null ? -1 : r.key.length);
    case "s":
      return (r, e) => textOf(r.value, e);
    case "S":
      return (r) => String(r.value === null ? -1 : r.value.length);
    case "T":
      return (r) => String(r.timestamp);
    case "h":
      return (r, e) => r.headers.map((h) => `${h.key}=${textOf(h.value, e)}`).join(",");
    default:
      return "%";
  }
}

/** Compiles a --format string; an unknown %token is a usage error naming it. */
export function compileFormat(
  format: string,
): (record: ConsumerRecord, escaped: Escapes) => string {
  const pieces: Piece[] = [];
  let literal = "";
  for (let i = 0; i < format.length; i++) {
    const char = format[i]!;
    const next = format[i + 1];
    if (char === "\\" && next !== undefined && "nt\\".includes(next)) {
      literal += next === "n" ? "\n" : next === "t" ? "\t" : "\\";
      i++;
    } else if (char === "%") {
      if (next === undefined || !TOKENS.includes(next)) {
        throw new UsageError(
          `--format ${JSON.stringify(format)}: unknown token '%${next ?? ""}' ` +
            "(expected %t %p %o %k %K %s %S %T %h or %%)",
        );
      }
      pieces.push(literal);
      literal = "";
      pieces.push(token(next));
      i++;
    } else {
      literal += char;
    }
  }
  pieces.push(literal);
  return (record, escaped) =>
    pieces.map((piece) => (typeof piece === "string" ? piece : piece(record, escaped))).join("");
}

export type OutputMode = { kind: "values" } | { kind: "json" } | { kind: "format"; format: string };

/** Turns records into the text to print, and notes once when a value had to be escaped. */
export class RecordPrinter {
  readonly #render: (record: ConsumerRecord, escaped: Escapes) => string;
  #warned = false;

  constructor(mode: OutputMode) {
    if (mode.kind === "json") this.#render = (record) => `${recordJson(record)}\n`;
    else if (mode.kind === "format") this.#render = compileFormat(mode.format);
    else this.#render = (record, escaped) => `${textOf(record.value, escaped)}\n`;
  }

  render(records: readonly ConsumerRecord[]): string {
    let text = "";
    for (const record of records) {
      const escaped: Escapes = { found: false };
      text += this.#render(record, escaped);
      if (escaped.found && !this.#warned) {
        this.#warned = true;
        process.stderr.write(
          `sluice consume: ${record.topic}/${record.partition} offset ${record.offset} is not ` +
            "valid UTF-8: bytes that are not are printed as \\xNN (and \\ as \\\\ in such " +
            "values); --json prints exact bytes as base64\n",
        );
      }
    }
    return text;
  }
}
