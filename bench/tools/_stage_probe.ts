// Preloaded into the broker by e2e_stages.ts (`bun --preload`): stamps, for each one-record
// batch of the latency run, when the broker started its append (PartitionLog.appendChecked,
// or appendTo on the acks 0/1 path) and when that append was done (its flush round written
// and published, which is also when the fetch waiting for it is woken). The message's index
// is read from its value (bytes 8-15, a float64, as the latency loop writes it). On SIGUSR2
// the stamps go to SLUICE_STAGE_FILE as JSON: { append: number[], done: number[] } indexed by
// message (0 where not seen).
// SLUICE_STAGE_ROOT names the checkout whose engine the broker runs (its PartitionLog class is
// the one patched). A diagnostic only: it decodes a few header bytes per append.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { PartitionLog } from "../../engine/mod.ts";

const file = process.env["SLUICE_STAGE_FILE"];
const root = process.env["SLUICE_STAGE_ROOT"];
/** Messages stamped at most (indexes past it are not recorded). */
const MESSAGES_MAX = 2_000_000;
const BATCH_HEADER_BYTES = 61;
const RECORD_COUNT_AT = 57;

/** A zigzag varint at `at`: its value and the position after it, or undefined. */
function varint(bytes: Uint8Array, at: number): [number, number] | undefined {
  let raw = 0;
  let shift = 0;
  for (let i = at; i < bytes.length && shift <= 28; i++) {
    const byte = bytes[i]!;
    raw |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [(raw >>> 1) ^ -(raw & 1), i + 1];
    shift += 7;
  }
  return undefined;
}

/** The latency loop's message index in a one-record batch, or -1. */
function messageIndex(batch: Uint8Array): number {
  if (batch.length < BATCH_HEADER_BYTES + 8) return -1;
  const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  if (view.getInt32(RECORD_COUNT_AT) !== 1) return -1;
  let at = varint(batch, BATCH_HEADER_BYTES)?.[1];
  if (at === undefined) return -1;
  at += 1; // attributes
  for (let field = 0; field < 2; field++) at = varint(batch, at)?.[1] ?? batch.length;
  const key = varint(batch, at);
  if (key === undefined) return -1;
  at = key[1] + Math.max(0, key[0]);
  const value = varint(batch, at);
  if (value === undefined || value[0] < 16 || value[1] + 16 > batch.length) return -1;
  const index = view.getFloat64(value[1] + 8);
  return Number.isSafeInteger(index) && index >= 0 && index < MESSAGES_MAX ? index : -1;
}

if (file !== undefined && root !== undefined) {
  const { PartitionLog } = (await import(join(root, "engine/mod.ts"))) as {
    PartitionLog: { prototype: PartitionLog };
  };
  const append = new Float64Array(MESSAGES_MAX);
  const done = new Float64Array(MESSAGES_MAX);
  let seen = 0;
  const now = () => performance.timeOrigin + performance.now();
  const original = PartitionLog.prototype.appendChecked;
  PartitionLog.prototype.appendChecked = function (this: PartitionLog, ...args) {
    const index = messageIndex(args[0]);
    const startedMs = now();
    const appended = original.apply(this, args);
    if (index >= 0) {
      append[index] = startedMs;
      seen = Math.max(seen, index + 1);
      appended.then(
        () => {
          done[index] = now();
        },
        () => {},
      );
    }
    return appended;
  };
  // The broker's acks 0/1 path appends with a listener (server/_produce_answer.ts).
  const originalTo = PartitionLog.prototype.appendTo;
  PartitionLog.prototype.appendTo = function (this: PartitionLog, batch, lease, listener) {
    const index = messageIndex(batch);
    if (index < 0) return originalTo.call(this, batch, lease, listener);
    const startedMs = now();
    originalTo.call(this, batch, lease, {
      appended(result) {
        done[index] = now();
        listener.appended(result);
      },
      refused: (error) => listener.refused(error),
    });
    append[index] = startedMs;
    seen = Math.max(seen, index + 1);
  };
  process.on("SIGUSR2", () => {
    const body = { append: [...append.subarray(0, seen)], done: [...done.subarray(0, seen)] };
    writeFileSync(file, JSON.stringify(body));
  });
}
