// Payloads and keys. Every payload carries its send time in its first 8 bytes (a float64 of
// milliseconds on the harness's monotonic clock, `performance.now()`), written at send and
// read in the consumer callback in the same process, so end-to-end latency needs no clock
// agreement between machines.
//
// Each send gets its own bytes: a driver may keep a payload until its batch is written, so a
// buffer handed out is not written again before its send is acknowledged. Payloads are carved
// from 1 MiB slabs to keep allocation off the per-message path, and a slab whose every payload
// was acknowledged (`release`) is carved again: a fresh slab costs a first-touch page fault per
// 4 KiB, which was ~20% of a producer worker's time at 36,000 1 KiB messages/s. A payload
// whose send failed is never released, so its slab is left to the garbage collector (a driver
// may still hold a payload it gave up on).

import { randomBytes } from "node:crypto";
import fs from "node:fs";
import { assert } from "../record/mod.ts";
import { TIMESTAMP_BYTES, type Workload } from "./workload.ts";

const SLAB_BYTES = 1024 * 1024;
/** Released slabs kept for reuse; more are left to the garbage collector. */
export const SLABS_FREE_MAX = 64;

/** A slab and how many of its payloads are still out (handed out, not released). */
type Slab = { bytes: Uint8Array; out: number; carved: boolean };
/** OMB's key distributors draw from this many distinct keys... */
export const UNIQUE_KEYS = 10_000;
/** ...of this many random alphanumeric bytes. */
export const KEY_BYTES = 7;

const stampValue = new Float64Array(1);
const stampBytes = new Uint8Array(stampValue.buffer);

/** Writes `stampMs` into the first 8 bytes of `payload`. */
export function writeStamp(payload: Uint8Array, stampMs: number): void {
  stampValue[0] = stampMs;
  for (let i = 0; i < TIMESTAMP_BYTES; i++) payload[i] = stampBytes[i]!;
}

/** Reads the stamp writeStamp wrote; NaN when the payload is too short to hold one. */
export function readStamp(payload: Uint8Array): number {
  if (payload.length < TIMESTAMP_BYTES) return Number.NaN;
  for (let i = 0; i < TIMESTAMP_BYTES; i++) stampBytes[i] = payload[i]!;
  return stampValue[0]!;
}

/** The payload templates: one from payloadFile, a randomized pool, or one random payload. */
export function payloadTemplates(
  workload: Pick<
    Workload,
    | "messageSize"
    | "payloadFile"
    | "useRandomizedPayloads"
    | "randomBytesRatio"
    | "randomizedPayloadPoolSize"
  >,
): Uint8Array[] {
  const size = workload.messageSize;
  if (workload.payloadFile !== undefined)
    return [new Uint8Array(fs.readFileSync(workload.payloadFile))];
  if (!workload.useRandomizedPayloads) return [new Uint8Array(randomBytes(size))];
  // As OMB: the first randomBytesRatio of each payload is random, the rest zeros.
  const randomCount = Math.floor(size * workload.randomBytesRatio);
  const templates: Uint8Array[] = [];
  for (let i = 0; i < workload.randomizedPayloadPoolSize; i++) {
    const template = new Uint8Array(size);
    template.set(randomBytes(randomCount));
    templates.push(template);
  }
  return templates;
}

export class PayloadSource {
  readonly messageSize: number;
  #templates: Uint8Array[];
  #slab: Slab = { bytes: new Uint8Array(0), out: 0, carved: true };
  #slabUsed = 0;
  /** Every slab with payloads out, by its memory, so release finds it. */
  #slabs = new Map<ArrayBufferLike, Slab>();
  #free: Slab[] = [];
  /** Slabs allocated so far (tests; a steady load stops allocating). */
  slabsAllocated = 0;

  constructor(templates: Uint8Array[]) {
    if (templates.length === 0) throw new RangeError("templates must hold at least one payload");
    const size = templates[0]!.length;
    if (templates.some((template) => template.length !== size) || size < TIMESTAMP_BYTES) {
      throw new RangeError(`templates must all hold the same ≥ ${TIMESTAMP_BYTES} bytes`);
    }
    this.messageSize = size;
    this.#templates = templates;
  }

  /** A payload no send holds, stamped with `stampMs`. */
  next(stampMs: number): Uint8Array {
    const size = this.messageSize;
    const templates = this.#templates;
    const template =
      templates.length === 1 ? templates[0]! : templates[(Math.random() * templates.length) | 0]!;
    let payload: Uint8Array;
    if (size > SLAB_BYTES / 4) {
      payload = template.slice();
    } else {
      if (this.#slabUsed + size > this.#slab.bytes.length) this.#nextSlab();
      const slab = this.#slab;
      payload = slab.bytes.subarray(this.#slabUsed, this.#slabUsed + size);
      this.#slabUsed += size;
      slab.out++;
      payload.set(template);
    }
    writeStamp(payload, stampMs);
    return payload;
  }

  /**
   * The send of `payload` (from next) was acknowledged: no driver holds it any more, and its
   * bytes may be handed out again. Call it once per payload, never for a failed send.
   */
  release(payload: Uint8Array): void {
    const slab = this.#slabs.get(payload.buffer);
    if (slab === undefined) return;
    assert(slab.out > 0, "a payload released twice");
    slab.out--;
    if (slab.out === 0 && slab.carved) this.#recycle(slab);
  }

  #nextSlab(): void {
    const full = this.#slab;
    full.carved = true;
    if (full.out === 0 && full.bytes.length > 0) this.#recycle(full);
    let slab = this.#free.pop();
    if (slab === undefined) {
      slab = { bytes: new Uint8Array(SLAB_BYTES), out: 0, carved: false };
      this.slabsAllocated++;
    }
    slab.carved = false;
    this.#slabs.set(slab.bytes.buffer, slab);
    this.#slab = slab;
    this.#slabUsed = 0;
  }

  #recycle(slab: Slab): void {
    this.#slabs.delete(slab.bytes.buffer);
    if (this.#free.length < SLABS_FREE_MAX) this.#free.push(slab);
  }
}

const ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** OMB's key distributors: none, round-robin over a fixed key set, or one picked by the clock. */
export class KeySource {
  readonly distributor: Workload["keyDistributor"];
  #keys: Uint8Array[] = [];
  #next = 0;

  constructor(distributor: Workload["keyDistributor"]) {
    this.distributor = distributor;
    if (distributor === "NO_KEY") return;
    const random = randomBytes(UNIQUE_KEYS * KEY_BYTES);
    for (let k = 0; k < UNIQUE_KEYS; k++) {
      const key = new Uint8Array(KEY_BYTES);
      for (let i = 0; i < KEY_BYTES; i++) {
        key[i] = ALPHANUMERIC.charCodeAt(random[k * KEY_BYTES + i]! % ALPHANUMERIC.length);
      }
      this.#keys.push(key);
    }
  }

  next(): Uint8Array | null {
    if (this.distributor === "NO_KEY") return null;
    if (this.distributor === "KEY_ROUND_ROBIN") {
      const key = this.#keys[this.#next]!;
      this.#next = (this.#next + 1) % UNIQUE_KEYS;
      return key;
    }
    // RANDOM_NANO: the key at the clock's nanoseconds modulo the key count, as OMB does.
    const nanos = Math.floor(performance.now() * 1_000_000);
    return this.#keys[nanos % UNIQUE_KEYS]!;
  }
}
