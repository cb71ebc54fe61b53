// Test-only helpers for the partition log tests: batches with recognisable contents, reading a
// log back as plain records, checking SluiceError codes, and a FileIO that counts calls and
// injects faults (ENOSPC, EIO, short writes) at chosen writes and fsyncs.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { isSluiceError, type SluiceErrorCode } from "../../record/mod.ts";
import { type FileIO, type MapRange, realFileIO } from "../../engine/io.ts";
import type { LogConfig } from "../../engine/log_config.ts";
import { PartitionLog, type ReadResult } from "../../engine/partition_log.ts";
import { decodeRecordBatches, encodeRecordBatch, type LogRecord } from "../../engine/mod.ts";
import { type BatchLease, segmentFileName } from "../../engine/segment.ts";

/** A timestamp in the range real producers send. */
export const BASE_TIMESTAMP_MS = 1_700_000_000_000;

/** A value whose bytes name `tag`, so that a record read back shows where it came from. */
export function recordValue(tag: number, length: number): Uint8Array {
  const value = new Uint8Array(length);
  for (let i = 0; i < length; i++) value[i] = (tag * 31 + i * 7) & 0xff;
  const label = new TextEncoder().encode(`#${tag};`);
  value.set(label.subarray(0, Math.min(length, label.length)));
  return value;
}

export type PlainRecord = { offset: number; timestamp: number; value: string | null };

export type RecordSpec = { tag: number; valueBytes: number; timestamp: number };

/** One batch holding one record per spec. */
export function batchOfSpecs(specs: readonly RecordSpec[]): Uint8Array {
  return encodeRecordBatch(
    specs.map((spec) => ({
      value: recordValue(spec.tag, spec.valueBytes),
      timestamp: spec.timestamp,
    })),
  );
}

/** A batch of `count` records with values of `valueBytes` bytes, tagged from `firstTag`. */
export function simpleBatch(
  count: number,
  options: { firstTag?: number; valueBytes?: number; timestamp?: number } = {},
): Uint8Array {
  const firstTag = options.firstTag ?? 0;
  const specs: RecordSpec[] = [];
  for (let i = 0; i < count; i++) {
    specs.push({
      tag: firstTag + i,
      valueBytes: options.valueBytes ?? 16,
      timestamp: options.timestamp ?? BASE_TIMESTAMP_MS,
    });
  }
  return batchOfSpecs(specs);
}

export function hex(bytes: Uint8Array | null): string | null {
  return bytes === null ? null : Buffer.from(bytes).toString("hex");
}

export function plain(record: LogRecord): PlainRecord {
  return { offset: record.offset, timestamp: record.timestamp, value: hex(record.value) };
}

/** What a spec should read back as at `offset`. */
export function expectedRecord(spec: RecordSpec, offset: number): PlainRecord {
  return { offset, timestamp: spec.timestamp, value: hex(recordValue(spec.tag, spec.valueBytes)) };
}

/** The batches of a read, decoded (which checks every CRC again). */
export function decodeRead(result: ReadResult): { baseOffset: number; records: PlainRecord[] }[] {
  const batches: { baseOffset: number; records: PlainRecord[] }[] = [];
  let sizeBytes = 0;
  for (const view of result.views) {
    const decoder = decodeRecordBatches(view, { partialTail: "error" });
    for (const batch of decoder) {
      batches.push({ baseOffset: batch.baseOffset, records: batch.records.map(plain) });
      sizeBytes += batch.sizeBytes;
    }
  }
  assert.equal(sizeBytes, result.sizeBytes, "sizeBytes is the bytes of the views");
  return batches;
}

/** Every record from `from` to the high watermark, read `maxBytes` at a time. */
export function readAll(log: PartitionLog, from = log.logStartOffset, maxBytes = 1 << 20) {
  const records: PlainRecord[] = [];
  let offset = from;
  while (offset < log.highWatermark) {
    const result = log.read(offset, maxBytes);
    assert.ok(result.views.length > 0, `a read at ${offset} below the high watermark is not empty`);
    assert.ok(result.nextOffset > offset, `read at ${offset} makes progress`);
    for (const batch of decodeRead(result)) {
      for (const record of batch.records) if (record.offset >= offset) records.push(record);
    }
    offset = result.nextOffset;
  }
  return records;
}

/** The log's idea of itself matches its files, and its records are exactly `acked`. */
export function assertConsistent(log: PartitionLog, dir: string, acked: PlainRecord[]): void {
  assert.equal(log.logEndOffset, acked.length, "logEndOffset");
  assert.equal(log.highWatermark, acked.length, "highWatermark");
  assert.deepEqual(readAll(log), acked, "the records are the acknowledged ones");
  const onDisk = logFileSizes(dir);
  assert.deepEqual([...onDisk.keys()], log.segmentBaseOffsets(), "one file per segment");
  let total = 0;
  for (const size of onDisk.values()) total += size;
  assert.equal(total, log.sizeBytes, "the .log files hold what the log believes");
}

/** Reopens with the real FileIO and checks that exactly `acked` is there. */
export async function assertReopensWith(
  dir: string,
  config: Partial<LogConfig>,
  acked: PlainRecord[],
) {
  const warnings: string[] = [];
  const log = await PartitionLog.open(dir, config, { onWarning: (m) => warnings.push(m) });
  try {
    assert.deepEqual(log.corruptions, []);
    assert.deepEqual(readAll(log), acked, "a reopen finds exactly the acknowledged records");
    assert.equal(log.logEndOffset, acked.length);
  } finally {
    await log.close();
  }
  return warnings;
}

/** An assert.rejects / assert.throws validator for a SluiceError with `code`. */
export function sluiceCode(code: SluiceErrorCode) {
  return (error: unknown): true => {
    assert.ok(isSluiceError(error), `expected SluiceError ${code}, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return true;
  };
}

export function segmentPath(dir: string, baseOffset: number, extension: string): string {
  return join(dir, segmentFileName(baseOffset, extension));
}

export function fileSize(path: string): number {
  return fs.statSync(path).size;
}

/** Sizes of the .log files in `dir`, by base offset. */
export function logFileSizes(dir: string): Map<number, number> {
  const sizes = new Map<number, number>();
  for (const name of fs.readdirSync(dir).sort()) {
    const match = /^(\d{20})\.log$/.exec(name);
    if (match !== null) sizes.set(Number(match[1]), fileSize(join(dir, name)));
  }
  return sizes;
}

/** The bytes of every .index and .timeindex file in `dir`, by name, as hex. */
export function indexFiles(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const name of fs.readdirSync(dir).sort()) {
    if (name.endsWith(".index") || name.endsWith(".timeindex")) {
      files.set(name, hex(new Uint8Array(fs.readFileSync(join(dir, name))))!);
    }
  }
  return files;
}

/** Asserts two indexFiles() snapshots are equal, naming the files that differ. */
export function assertSameIndexFiles(
  actual: Map<string, string>,
  expected: Map<string, string>,
  what: string,
): void {
  const names = [...new Set([...actual.keys(), ...expected.keys()])].sort();
  const differing = names.filter((name) => actual.get(name) !== expected.get(name));
  assert.deepEqual(differing, [], `${what}: index files that differ`);
}

/**
 * Copies the regular files of one directory into another (a partition snapshot). A file
 * unlinked while the copy runs (a deleted segment's, on the thread pool) is left out, as a
 * crash at that moment may leave it out.
 */
export function copyDir(from: string, to: string): void {
  fs.mkdirSync(to, { recursive: true });
  for (const name of fs.readdirSync(from)) {
    try {
      fs.copyFileSync(join(from, name), join(to, name));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }
}

export type FaultKind = "ENOSPC" | "EIO";

/** A fault for one call: fail outright, or write `shortBytes` first and then fail. */
export type Fault = { code: FaultKind; shortBytes?: number };

export type WriteCall = { fd: number; position: number; bytes: number; index: number };
export type SyncCall = { fd: number; index: number };

export function errnoError(code: FaultKind, syscall: string): Error {
  const errno = code === "ENOSPC" ? -28 : -5;
  const text = code === "ENOSPC" ? "no space left on device" : "input/output error";
  return Object.assign(new Error(`${code}: ${text} (injected), ${syscall}`), {
    code,
    errno,
    syscall,
  });
}

/** Keeps the first `count` bytes of a list of buffers. */
function firstBytes(buffers: Uint8Array[], count: number): Uint8Array[] {
  const kept: Uint8Array[] = [];
  let remaining = count;
  for (const buffer of buffers) {
    if (remaining === 0) break;
    const take = Math.min(remaining, buffer.length);
    kept.push(buffer.subarray(0, take));
    remaining -= take;
  }
  return kept;
}

/**
 * The real file operations, counted, with faults injected by the `onWrite` and `onSync`
 * hooks: a hook returning a Fault makes that call fail (after a short write, if asked).
 */
export class FaultyIO implements FileIO {
  writeCount = 0;
  syncCount = 0;
  bytesRead = 0;
  readonly writes: WriteCall[] = [];
  readonly syncs: SyncCall[] = [];
  onWrite: ((call: WriteCall) => Fault | undefined) | undefined;
  onSync: ((call: SyncCall) => Fault | undefined) | undefined;
  /** While set, writes wait for it before they run (and before onWrite is asked). */
  writeGate: Promise<void> | undefined;
  /** Paths of whole-file and positional file writes, directory fsyncs, in call order. */
  readonly fileWrites: string[] = [];
  /** Asked before each file-level write (by path): a Fault makes it fail, writing nothing. */
  onFileWrite: ((path: string) => Fault | undefined) | undefined;

  async writeAll(fd: number, buffers: Uint8Array[], position: number): Promise<void> {
    let bytes = 0;
    for (const buffer of buffers) bytes += buffer.length;
    const call = { fd, position, bytes, index: this.writeCount++ };
    this.writes.push(call);
    if (this.writeGate !== undefined) await this.writeGate;
    const fault = this.onWrite?.(call);
    if (fault === undefined) return realFileIO.writeAll(fd, buffers, position);
    const shortBytes = Math.min(fault.shortBytes ?? 0, bytes);
    if (shortBytes > 0) await realFileIO.writeAll(fd, firstBytes(buffers, shortBytes), position);
    throw errnoError(fault.code, "write");
  }

  async datasync(fd: number): Promise<void> {
    const call = { fd, index: this.syncCount++ };
    this.syncs.push(call);
    const fault = this.onSync?.(call);
    if (fault !== undefined) throw errnoError(fault.code, "fdatasync");
    return realFileIO.datasync(fd);
  }

  readAt(fd: number, position: number, length: number): Uint8Array {
    const bytes = realFileIO.readAt(fd, position, length);
    this.bytesRead += bytes.length;
    return bytes;
  }

  truncate(fd: number, length: number): void {
    realFileIO.truncate(fd, length);
  }

  mapFile(path: string, range?: MapRange): Uint8Array | undefined {
    return realFileIO.mapFile(path, range);
  }

  #fileWrite(path: string, syscall: string): void {
    this.fileWrites.push(path);
    const fault = this.onFileWrite?.(path);
    if (fault !== undefined) throw errnoError(fault.code, syscall);
  }

  writeFile(path: string, bytes: Uint8Array | string): void {
    this.#fileWrite(path, "write");
    realFileIO.writeFile(path, bytes);
  }

  async writeFileAt(path: string, bytes: Uint8Array, position: number): Promise<void> {
    this.#fileWrite(path, "write");
    return realFileIO.writeFileAt(path, bytes, position);
  }

  async syncFile(path: string): Promise<void> {
    this.#fileWrite(path, "fdatasync");
    return realFileIO.syncFile(path);
  }

  syncDirectory(path: string): void {
    this.#fileWrite(path, "fsync");
    realFileIO.syncDirectory(path);
  }

  writeFileAtomic(
    dir: string,
    name: string,
    bytes: Uint8Array | string,
    options?: { sync?: boolean },
  ): void {
    this.#fileWrite(`${dir}/${name}`, "write");
    realFileIO.writeFileAtomic(dir, name, bytes, options);
  }
}

/** A lender that counts its batch's retains and releases (never more releases than retains). */
export class CountingLease implements BatchLease {
  retained = 0;
  released = 0;
  retain(): void {
    this.retained++;
  }
  release(): void {
    this.released++;
    assert.ok(this.released <= this.retained, "released no more often than retained");
  }
}
