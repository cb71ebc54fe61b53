// Test helpers for queues: an engine on a virtual clock, records with recognisable values,
// fetch results decoded into one delivery per acquired record, acks built from deliveries,
// dead letters read back, and crash images (a copy of the data directory taken at one moment,
// which is what a killed process leaves behind).

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import {
  DEATH_HEADER_PREFIX,
  decodeRecordBatches,
  Engine,
  type EngineOptions,
  encodeRecordBatch,
  isSluiceError,
  type QueueAck,
  type QueueAckType,
  type QueueFetchResult,
  type SluiceError,
  type SluiceErrorCode,
} from "../../engine/mod.ts";

export const START_MS = 1_700_000_000_000;

/** A clock tests move by hand; engines read it through `now`. */
export class Clock {
  nowMs = START_MS;
  readonly now = (): number => this.nowMs;
  advance(ms: number): void {
    this.nowMs += ms;
  }
}

export type TestEngine = { engine: Engine; warnings: string[] };

export async function openEngine(
  dir: string,
  clock: Clock,
  options: EngineOptions = {},
): Promise<TestEngine> {
  const warnings: string[] = [];
  const engine = await Engine.open(dir, {
    now: clock.now,
    onWarning: (message) => warnings.push(message),
    ...options,
  });
  return { engine, warnings };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Appends one batch of records valued `values` to a partition; returns their offsets. */
export async function publish(
  engine: Engine,
  topic: string,
  partition: number,
  values: string[],
): Promise<number[]> {
  const batch = encodeRecordBatch(
    values.map((value) => ({
      key: encoder.encode(`k-${value}`),
      value: encoder.encode(value),
      headers: [{ key: "origin", value: encoder.encode("test") }],
    })),
    { timestamp: START_MS },
  );
  const { baseOffset } = await engine.append(topic, partition, batch);
  return values.map((_, i) => baseOffset + i);
}

export type Delivery = {
  partition: number;
  offset: number;
  deliveries: number;
  redelivered: boolean;
  value: string;
};

/**
 * One delivery per acquired record, found in the fetch's batches: every acquired offset must
 * be in exactly one returned batch, and no batch may come twice.
 */
export function deliveriesOf(result: QueueFetchResult): Delivery[] {
  const out: Delivery[] = [];
  for (const part of result.partitions) {
    const values = new Map<number, string>();
    for (const view of part.views) {
      for (const batch of decodeRecordBatches(view, { partialTail: "error" })) {
        for (const record of batch.records) {
          assert.ok(!values.has(record.offset), `offset ${record.offset} comes once`);
          values.set(record.offset, decoder.decode(record.value ?? new Uint8Array()));
        }
      }
    }
    let previousLast = -1;
    for (const range of part.ranges) {
      assert.ok(range.first > previousLast, "ranges are sorted and disjoint");
      assert.equal(range.redelivered, range.deliveries > 1, "redelivered = deliveries > 1");
      previousLast = range.last;
      for (let offset = range.first; offset <= range.last; offset++) {
        const value = values.get(offset);
        assert.ok(value !== undefined, `acquired offset ${offset} is in the returned batches`);
        const { deliveries, redelivered } = range;
        out.push({ partition: part.partition, offset, deliveries, redelivered, value });
      }
    }
  }
  return out;
}

/** Acks of one type for `deliveries`, contiguous offsets of a partition merged into ranges. */
export function acksFor(deliveries: readonly Delivery[], type: QueueAckType): QueueAck[] {
  const sorted = [...deliveries].sort((a, b) => a.partition - b.partition || a.offset - b.offset);
  const acks: QueueAck[] = [];
  for (const { partition, offset } of sorted) {
    const last = acks.at(-1);
    if (last !== undefined && last.partition === partition && last.last + 1 === offset) {
      last.last = offset;
    } else {
      acks.push({ partition, first: offset, last: offset, type });
    }
  }
  return acks;
}

export type DeadLetter = { value: string; headers: Record<string, string> };

/** Every record of a topic (all partitions), as dead letters with their headers as text. */
export function readDeadLetters(engine: Engine, topic: string): DeadLetter[] {
  const letters: DeadLetter[] = [];
  const { partitions } = engine.describeTopic(topic);
  for (let partition = 0; partition < partitions; partition++) {
    const log = engine.partition(topic, partition);
    let offset = log.logStartOffset;
    while (offset < log.highWatermark) {
      const read = log.read(offset, 1 << 20);
      for (const view of read.views) {
        for (const batch of decodeRecordBatches(view)) {
          for (const record of batch.records) {
            const headers: Record<string, string> = {};
            for (const header of record.headers) {
              headers[header.key] = decoder.decode(header.value ?? new Uint8Array());
            }
            letters.push({ value: decoder.decode(record.value ?? new Uint8Array()), headers });
          }
        }
      }
      offset = read.nextOffset;
    }
  }
  return letters;
}

/** The `sluice-death-*` header called `name`. */
export function death(letter: DeadLetter, name: string): string | undefined {
  return letter.headers[`${DEATH_HEADER_PREFIX}${name}`];
}

/** Copies a data directory as it is on disk now: what a process killed at this moment leaves. */
export function crashImage(dir: string, into: string): void {
  copyTree(dir, into);
  fs.rmSync(join(into, ".lock"), { force: true });
}

/**
 * `dir` copied into `into`, file by file. A file unlinked while the copy runs (a deleted
 * segment's, on the thread pool) is left out, as a crash at that moment may leave it out.
 */
function copyTree(dir: string, into: string): void {
  fs.mkdirSync(into, { recursive: true });
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const from = join(dir, entry.name);
    const to = join(into, entry.name);
    try {
      if (entry.isDirectory()) copyTree(from, to);
      else fs.copyFileSync(from, to);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }
}

/** Asserts that `action` fails with SluiceError `code` and returns the error. */
export async function failsWith(
  action: () => unknown,
  code: SluiceErrorCode,
): Promise<SluiceError> {
  let caught: unknown;
  try {
    await action();
  } catch (error) {
    caught = error;
  }
  assert.ok(isSluiceError(caught), `expected SluiceError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  return caught;
}
