// Message TTL: which records of a queue have expired. A record expires at its timestamp plus
// the lower of the queue's `messageTtlMs` and its own `sluice-ttl-ms` header (RabbitMQ's rule:
// the lower of the queue's and the message's TTL wins); with neither it never expires.
//
// The verdict is taken per batch, from as little as possible:
//
//   batch header only   the queue TTL alone has expired the whole batch:
//                       maxTimestamp + messageTtlMs <= now (a header cannot lengthen a TTL)
//   varint scan         an uncompressed batch: each record's timestamp delta and header keys
//                       are walked in place (no record objects, no copies); a `sluice-ttl-ms`
//                       value is parsed from its bytes
//   decompress + scan   a compressed batch that the header alone does not settle: its
//                       records section is decompressed and walked the same way
//
// A queue declared with messageTtlHeader "ignore" skips the header: only its TTL applies, and
// a batch is walked only when the TTL boundary falls between its base and max timestamps.
//
// The header's value is an unsigned decimal integer of milliseconds in
// [0, MESSAGE_TTL_MS_MAX] (UTF-8 digits, nothing else). Any other value (empty, negative,
// a fraction, text, too large, null) is ignored: the record keeps the queue's TTL, as if it
// had no header. A batch whose records do not parse is judged by its header alone; the
// fetch that serves it reports its damage as usual.

import {
  assert,
  ATTRIBUTES_AT,
  baseOffsetAt,
  batchSizeAt,
  BATCH_HEADER_BYTES,
  BASE_TIMESTAMP_AT,
  COMPRESSION_MASK,
  compressionName,
  cursorOver,
  decompressRecords,
  lastOffsetDeltaAt,
  MAX_TIMESTAMP_AT,
  readInt16,
  readInt64,
  readVarint,
  readVarlong,
  recordCountAt,
  TIMESTAMP_TYPE_BIT,
  TTL_HEADER,
} from "../record/mod.ts";

/** The longest TTL, queue or message (RabbitMQ's x-message-ttl bound, about 49.7 days). */
export const MESSAGE_TTL_MS_MAX = 2 ** 32 - 1;

/** No record of the batch has expired, or every one has, or those flagged (by offset delta). */
export type BatchExpiry = "none" | "all" | Uint8Array;

const TTL_HEADER_BYTES = new TextEncoder().encode(TTL_HEADER);
const DIGIT_0 = 0x30;
const DIGITS_MAX = String(MESSAGE_TTL_MS_MAX).length;

/**
 * 1 to `digitsMax` ASCII decimal digits as a number, read from the bytes without decoding text;
 * undefined for anything else (empty, a sign, a space, a letter). Header values sluice reads as
 * numbers (TTL, delays, due times) use it.
 */
export function decimalDigits(bytes: Uint8Array, digitsMax: number): number | undefined {
  if (bytes.length === 0 || bytes.length > digitsMax) return undefined;
  let value = 0;
  for (const byte of bytes) {
    const digit = byte - DIGIT_0;
    if (digit < 0 || digit > 9) return undefined;
    value = value * 10 + digit;
  }
  // Past 2^53 the sum above may round differently from parsing the text.
  return Number.isSafeInteger(value) ? value : Number(String.fromCharCode(...bytes));
}

/** The TTL a header value asks for, or undefined when the value is not a valid one. */
export function headerTtlMs(value: Uint8Array | null): number | undefined {
  const ms = value === null ? undefined : decimalDigits(value, DIGITS_MAX);
  return ms !== undefined && ms <= MESSAGE_TTL_MS_MAX ? ms : undefined;
}

function sameBytes(bytes: Uint8Array, at: number, length: number, wanted: Uint8Array): boolean {
  if (length !== wanted.length) return false;
  for (let i = 0; i < length; i++) if (bytes[at + i] !== wanted[i]) return false;
  return true;
}

/** The lower TTL of the queue's and the header's, undefined when there is neither. */
function lowerTtl(queueTtlMs: number | null, headerMs: number | undefined): number | undefined {
  if (headerMs === undefined) return queueTtlMs ?? undefined;
  return queueTtlMs === null ? headerMs : Math.min(queueTtlMs, headerMs);
}

/**
 * Walks the records of an uncompressed batch in place (one cursor, no objects per record) and
 * counts those expired by `nowMs`, flagging them by offset delta in `flags` when given.
 * Returns -1 when the records do not parse.
 */
function walkExpired(
  batch: Uint8Array,
  section: Uint8Array,
  judge: { nowMs: number; queueTtlMs: number | null; readHeaders: boolean },
  flags: Uint8Array | null,
): number {
  const { nowMs, queueTtlMs } = judge;
  const baseMs = readInt64(batch, BASE_TIMESTAMP_AT);
  const appendTimeMs = (readInt16(batch, ATTRIBUTES_AT) & TIMESTAMP_TYPE_BIT) !== 0;
  const maxMs = readInt64(batch, MAX_TIMESTAMP_AT);
  const records = recordCountAt(batch, 0);
  // `section` is the batch itself (records after the header) or its decompressed records.
  const sectionEnd = section.length;
  const cursor = cursorOver(section, section === batch ? BATCH_HEADER_BYTES : 0, sectionEnd);
  let expired = 0;
  for (let index = 0; index < records; index++) {
    cursor.end = sectionEnd;
    const length = readVarint(cursor);
    if (!(length >= 1) || cursor.position + length > sectionEnd) return -1;
    const end = cursor.position + length;
    cursor.end = end;
    cursor.position++; // attributes
    const timestampDelta = readVarlong(cursor);
    const offsetDelta = readVarint(cursor);
    if (Number.isNaN(timestampDelta) || Number.isNaN(offsetDelta)) return -1;
    for (let field = 0; field < 2; field++) {
      const bytes = readVarint(cursor);
      if (!(bytes >= -1) || cursor.position + Math.max(0, bytes) > end) return -1;
      cursor.position += Math.max(0, bytes);
    }
    const headerMs = scanHeaders(cursor, end);
    if (headerMs === null) return -1;
    const ttl = lowerTtl(queueTtlMs, judge.readHeaders ? headerMs : undefined);
    const timestampMs = appendTimeMs ? maxMs : baseMs + timestampDelta;
    if (ttl !== undefined && timestampMs + ttl <= nowMs) {
      expired++;
      if (flags !== null && offsetDelta >= 0 && offsetDelta < flags.length) flags[offsetDelta] = 1;
    }
    cursor.position = end;
  }
  return cursor.position === sectionEnd ? expired : -1;
}

/** The valid `sluice-ttl-ms` of a record's headers (the last one wins); null on bad bytes. */
function scanHeaders(cursor: ReturnType<typeof cursorOver>, end: number) {
  const count = readVarint(cursor);
  if (!(count >= 0) || count > end - cursor.position) return null;
  let ttlMs: number | undefined;
  for (let i = 0; i < count; i++) {
    const keyBytes = readVarint(cursor);
    if (!(keyBytes >= 0) || cursor.position + keyBytes > end) return null;
    const isTtl = sameBytes(cursor.bytes, cursor.position, keyBytes, TTL_HEADER_BYTES);
    cursor.position += keyBytes;
    const valueBytes = readVarint(cursor);
    if (!(valueBytes >= -1) || cursor.position + Math.max(0, valueBytes) > end) return null;
    if (isTtl) {
      const value =
        valueBytes < 0
          ? null
          : cursor.bytes.subarray(cursor.position, cursor.position + valueBytes);
      ttlMs = headerTtlMs(value) ?? ttlMs;
    }
    cursor.position += Math.max(0, valueBytes);
  }
  return cursor.position === end ? ttlMs : null;
}

/** The records section of a compressed batch, decompressed; undefined when it cannot be. */
function decompressedSection(batch: Uint8Array): Uint8Array | undefined {
  const name = compressionName(readInt16(batch, ATTRIBUTES_AT));
  if (name === undefined) return undefined;
  try {
    return decompressRecords(name, batch.subarray(BATCH_HEADER_BYTES));
  } catch {
    return undefined;
  }
}

/**
 * Which records of `batch` (one whole batch, header first) have expired by `nowMs` under a
 * queue TTL of `queueTtlMs` (null: none) and their own headers.
 */
export function batchExpiry(
  batch: Uint8Array,
  nowMs: number,
  queueTtlMs: number | null,
  readHeaders = true,
): BatchExpiry {
  const maxMs = readInt64(batch, MAX_TIMESTAMP_AT);
  if (queueTtlMs !== null && maxMs + queueTtlMs <= nowMs) return "all";
  if (!readHeaders) {
    // Header only, unless the TTL boundary falls inside the batch: the first record's
    // timestamp is taken as the batch's earliest (as producers write batches).
    if (queueTtlMs === null) return "none";
    if (readInt64(batch, BASE_TIMESTAMP_AT) + queueTtlMs > nowMs) return "none";
  }
  const compressed = (readInt16(batch, ATTRIBUTES_AT) & COMPRESSION_MASK) !== 0;
  const section = compressed ? decompressedSection(batch) : batch;
  if (section === undefined) return "none";
  const judge = { nowMs, queueTtlMs, readHeaders };
  const expired = walkExpired(batch, section, judge, null);
  // Records that do not parse: judged by the header alone (above), the fetch reports them.
  if (expired <= 0) return "none";
  if (expired === recordCountAt(batch, 0)) return "all";
  // Mixed (rare): a second pass flags which.
  const flags = new Uint8Array(lastOffsetDeltaAt(batch, 0) + 1);
  walkExpired(batch, section, judge, flags);
  return flags;
}

/** Whether the record `delta` records into a batch has expired, by a verdict on the batch. */
export function isExpired(expiry: BatchExpiry, delta: number): boolean {
  if (expiry === "none") return false;
  if (expiry === "all") return true;
  return expiry[delta] === 1;
}

/** The batch holding an offset, with the verdict on its records. */
export type JudgedBatch = { base: number; last: number; expiry: BatchExpiry };

/** What reads a batch: a partition log. */
type BatchSource = { read(offset: number, maxBytes: number): { views: Uint8Array[] } };

/**
 * Judges the batches of one partition at one moment, remembering the last one (records of a
 * batch are usually looked at one after another). A read's damage is thrown as the log
 * reports it.
 */
export class ExpiryReader {
  readonly #log: BatchSource;
  readonly #nowMs: number;
  readonly #queueTtlMs: number | null;
  readonly #readHeaders: boolean;
  #last: JudgedBatch | undefined;

  constructor(
    log: BatchSource,
    nowMs: number,
    ttl: { queueTtlMs: number | null; readHeaders: boolean },
  ) {
    this.#log = log;
    this.#nowMs = nowMs;
    this.#queueTtlMs = ttl.queueTtlMs;
    this.#readHeaders = ttl.readHeaders;
  }

  /** The batch holding `offset` (which must be below the log's high watermark). */
  batchAt(offset: number): JudgedBatch {
    const last = this.#last;
    if (last !== undefined && last.base <= offset && offset <= last.last) return last;
    const view = this.#log.read(offset, 1).views[0];
    assert(view !== undefined, "a read below the high watermark returns a batch");
    return this.judge(view.subarray(0, batchSizeAt(view, 0)));
  }

  /** Judges one whole batch (and remembers it). */
  judge(batch: Uint8Array): JudgedBatch {
    const base = baseOffsetAt(batch, 0);
    const judged = {
      base,
      last: base + lastOffsetDeltaAt(batch, 0),
      expiry: batchExpiry(batch, this.#nowMs, this.#queueTtlMs, this.#readHeaders),
    };
    this.#last = judged;
    return judged;
  }

  expired(offset: number): boolean {
    const batch = this.batchAt(offset);
    return isExpired(batch.expiry, offset - batch.base);
  }
}
