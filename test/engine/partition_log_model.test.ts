// A model-based test of PartitionLog: a seeded PRNG drives random appends, reads, timestamp
// lookups, flushes, retention, clean reopens and simulated crashes against an in-memory model
// (the list of acknowledged batches). After every step the log must agree with the model.
//
// A failure names its seed; to replay it exactly, run
//   SLUICE_SEED=<seed> bun test test/engine/partition_log_model.test.ts
// (several seeds: SLUICE_SEED=1,2,3). Without SLUICE_SEED every run tries new random seeds.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import type { FsyncPolicy, LogConfig } from "../../engine/log_config.ts";
import { encodeRecordBatch, type RecordInput } from "../../engine/mod.ts";
import { PartitionLog } from "../../engine/partition_log.ts";
import { mulberry32, tempDir } from "../helpers.ts";
import {
  BASE_TIMESTAMP_MS,
  copyDir,
  decodeRead,
  hex,
  logFileSizes,
  type PlainRecord,
  recordValue,
  sluiceCode,
} from "./partition_log_helpers.ts";

const SEEDS_PER_RUN = 4;
const STEPS_PER_SEED = 300;
const BATCH_BYTES_MAX = 64 * 1024;

class Random {
  readonly #next: () => number;

  constructor(seed: number) {
    this.#next = mulberry32(seed);
  }

  /** An integer in [low, high]. */
  int(low: number, high: number): number {
    return low + Math.floor(this.#next() * (high - low + 1));
  }

  chance(probability: number): boolean {
    return this.#next() < probability;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]!;
  }

  /** Picks a key of `weights` with probability proportional to its weight. */
  weighted<K extends string>(weights: Record<K, number>): K {
    const entries = Object.entries(weights) as [K, number][];
    let total = 0;
    for (const [, weight] of entries) total += weight;
    let roll = this.#next() * total;
    for (const [key, weight] of entries) {
      roll -= weight;
      if (roll < 0) return key;
    }
    return entries.at(-1)![0];
  }
}

function seedsForRun(): number[] {
  const fromEnv = process.env["SLUICE_SEED"];
  if (fromEnv !== undefined && fromEnv !== "") {
    return fromEnv.split(",").map((text) => {
      const seed = Number(text.trim());
      if (!Number.isSafeInteger(seed))
        throw new RangeError(`SLUICE_SEED ${text} is not an integer`);
      return seed >>> 0;
    });
  }
  return Array.from({ length: SEEDS_PER_RUN }, () => Math.floor(Math.random() * 2 ** 32));
}

type ModelBatch = {
  baseOffset: number;
  lastOffset: number;
  sizeBytes: number;
  maxTimestamp: number;
  records: PlainRecord[];
};

/** The log as the model knows it: every acknowledged batch from the log start on. */
class Model {
  batches: ModelBatch[] = [];
  logStartOffset = 0;
  logEndOffset = 0;

  get sizeBytes(): number {
    let total = 0;
    for (const batch of this.batches) total += batch.sizeBytes;
    return total;
  }

  /** Index of the batch holding `offset`. */
  batchIndexOf(offset: number): number {
    const index = this.batches.findIndex((b) => b.baseOffset <= offset && offset <= b.lastOffset);
    assert.ok(index >= 0, `the model holds offset ${offset}`);
    return index;
  }

  /** The batches a read must return: greedy up to maxBytes, within one segment. */
  expectedRead(offset: number, maxBytes: number, segmentBases: number[]): ModelBatch[] {
    if (offset === this.logEndOffset) return [];
    const first = this.batchIndexOf(offset);
    const start = this.batches[first]!;
    const segmentEnd =
      segmentBases.find((base) => base > start.baseOffset) ?? Number.POSITIVE_INFINITY;
    const taken = [start];
    let size = start.sizeBytes;
    for (const batch of this.batches.slice(first + 1)) {
      if (batch.baseOffset >= segmentEnd || size + batch.sizeBytes > maxBytes) break;
      taken.push(batch);
      size += batch.sizeBytes;
    }
    return taken;
  }

  offsetForTimestamp(timestampMs: number): number | undefined {
    for (const batch of this.batches) {
      for (const record of batch.records) {
        if (record.timestamp >= timestampMs) return record.offset;
      }
    }
    return undefined;
  }

  /** Segments as [baseOffset, sizeBytes, maxTimestamp], given the log's segment bases. */
  segments(bases: number[]): [number, number, number][] {
    return bases.map((base, i) => {
      const end = bases[i + 1] ?? Number.POSITIVE_INFINITY;
      const inside = this.batches.filter((b) => b.baseOffset >= base && b.baseOffset < end);
      const size = inside.reduce((sum, b) => sum + b.sizeBytes, 0);
      const maxTimestamp = inside.reduce((max, b) => Math.max(max, b.maxTimestamp), -1);
      return [base, size, maxTimestamp];
    });
  }

  /** Kafka's retention rule: oldest sealed segments first, by age, then by total size. */
  expectedRetention(bases: number[], config: LogConfig, nowMs: number): number {
    const segments = this.segments(bases);
    let total = this.sizeBytes;
    let deleted = 0;
    for (const [, size, maxTimestamp] of segments.slice(0, -1)) {
      const expired = config.retentionMs >= 0 && maxTimestamp < nowMs - config.retentionMs;
      const oversized = config.retentionBytes >= 0 && total - size >= config.retentionBytes;
      if (!expired && !oversized) break;
      total -= size;
      deleted++;
    }
    return deleted;
  }

  dropBefore(offset: number): void {
    this.batches = this.batches.filter((b) => b.baseOffset >= offset);
    this.logStartOffset = offset;
  }
}

function randomConfig(random: Random): LogConfig {
  const segmentBytes = random.int(4, 64) * 1024;
  const kind = random.weighted({ never: 5, always: 2, interval: 2 });
  const fsync: FsyncPolicy = kind === "interval" ? { intervalMs: random.int(1, 20) } : kind;
  return {
    segmentBytes,
    segmentMs: random.chance(0.5) ? random.int(200, 3000) : 7 * 24 * 3600 * 1000,
    indexIntervalBytes: random.pick([1, 64, 512, 4096]),
    retentionMs: random.chance(0.6) ? random.int(500, 5000) : -1,
    retentionBytes: random.chance(0.5) ? random.int(segmentBytes, 6 * segmentBytes) : -1,
    maxBatchBytes: Math.min(segmentBytes, BATCH_BYTES_MAX),
    fsync,
  };
}

/** Encodes a random batch that fits maxBatchBytes; returns it with the records it holds. */
function randomBatch(random: Random, config: LogConfig, clockMs: number, tag: number) {
  const shape = random.weighted({ tiny: 6, medium: 3, large: 1 });
  const count = shape === "large" ? random.int(1, 4) : random.int(1, shape === "tiny" ? 8 : 20);
  const budget = Math.floor((config.maxBatchBytes - 61) / count) - 24;
  const valueMax = shape === "tiny" ? 64 : shape === "medium" ? 400 : budget;
  const inputs: RecordInput[] = [];
  const specs: { tag: number; valueBytes: number; timestamp: number }[] = [];
  for (let i = 0; i < count; i++) {
    const valueBytes = random.chance(0.05) ? -1 : random.int(0, Math.min(valueMax, budget));
    // Mostly near the clock, sometimes far in the past: out of order inside and across batches.
    const skew = random.chance(0.05) ? -random.int(1000, 20_000) : random.int(-100, 100);
    const timestamp = Math.max(0, clockMs + skew);
    inputs.push({ value: valueBytes < 0 ? null : recordValue(tag + i, valueBytes), timestamp });
    specs.push({ tag: tag + i, valueBytes, timestamp });
  }
  const compression = random.chance(0.1) ? "gzip" : "none";
  const bytes = encodeRecordBatch(inputs, { compression });
  assert.ok(bytes.length <= config.maxBatchBytes, `batch of ${bytes.length} fits`);
  return { bytes, specs };
}

type Run = {
  seed: number;
  random: Random;
  config: LogConfig;
  model: Model;
  log: PartitionLog;
  dir: string;
  root: string;
  generation: number;
  clockMs: number;
  nextTag: number;
};

async function openFor(run: Run): Promise<PartitionLog> {
  const tailCacheBytes = run.random.pick([0, 64 * 1024, 8 * 1024 * 1024]);
  return PartitionLog.open(run.dir, run.config, {
    tailCacheBytes,
    now: () => run.clockMs,
    onWarning: () => {},
  });
}

async function stepAppend(run: Run, concurrent: number): Promise<void> {
  const pending: Promise<void>[] = [];
  const made: { baseOffset: number; batch: ModelBatch }[] = [];
  for (let i = 0; i < concurrent; i++) {
    const { bytes, specs } = randomBatch(run.random, run.config, run.clockMs, run.nextTag);
    run.nextTag += specs.length;
    const baseOffset = run.model.logEndOffset;
    run.model.logEndOffset += specs.length;
    const records = specs.map((spec, j) => ({
      offset: baseOffset + j,
      timestamp: spec.timestamp,
      value: spec.valueBytes < 0 ? null : hex(recordValue(spec.tag, spec.valueBytes)),
    }));
    const maxTimestamp = Math.max(...specs.map((s) => s.timestamp));
    const batch = {
      baseOffset,
      lastOffset: baseOffset + specs.length - 1,
      sizeBytes: bytes.length,
    };
    made.push({ baseOffset, batch: { ...batch, maxTimestamp, records } });
    pending.push(
      run.log.append(bytes).then((result) => {
        assert.deepEqual(
          [result.baseOffset, result.lastOffset],
          [batch.baseOffset, batch.lastOffset],
          "offsets assigned in call order",
        );
      }),
    );
  }
  await Promise.all(pending);
  for (const { batch } of made) run.model.batches.push(batch);
}

function stepRead(run: Run): void {
  const { model, log, random } = run;
  if (random.chance(0.05)) {
    const below = model.logStartOffset - random.int(1, 10);
    const above = model.logEndOffset + random.int(1, 10);
    const offset = random.chance(0.5) && model.logStartOffset > 0 ? below : above;
    assert.throws(() => log.read(offset, 1000), sluiceCode("OFFSET_OUT_OF_RANGE"));
    return;
  }
  const offset = random.chance(0.05)
    ? model.logEndOffset
    : random.int(model.logStartOffset, Math.max(model.logStartOffset, model.logEndOffset - 1));
  const maxBytes = random.pick([1, random.int(1, 2000), random.int(1, 200_000)]);
  const result = log.read(offset, maxBytes);
  const expected = model.expectedRead(offset, maxBytes, log.segmentBaseOffsets());
  const got = decodeRead(result);
  assert.deepEqual(
    got.map((b) => b.baseOffset),
    expected.map((b) => b.baseOffset),
    `read(${offset}, ${maxBytes}) batches`,
  );
  assert.deepEqual(
    got.flatMap((b) => b.records),
    expected.flatMap((b) => b.records),
    `read(${offset}, ${maxBytes}) records`,
  );
  const size = expected.reduce((sum, b) => sum + b.sizeBytes, 0);
  assert.equal(result.sizeBytes, size);
  assert.equal(result.nextOffset, expected.length === 0 ? offset : expected.at(-1)!.lastOffset + 1);
  assert.equal(result.highWatermark, model.logEndOffset);
  assert.equal(result.logStartOffset, model.logStartOffset);
}

function stepOffsetForTimestamp(run: Run): void {
  const all = run.model.batches.flatMap((b) => b.records.map((r) => r.timestamp));
  const low = all.length === 0 ? 0 : Math.min(...all) - 5;
  const high = all.length === 0 ? 10 : Math.max(...all) + 5;
  const target = run.random.chance(0.3)
    ? run.random.pick(all.length === 0 ? [0] : all)
    : run.random.int(low, high);
  assert.equal(
    run.log.offsetForTimestamp(target),
    run.model.offsetForTimestamp(target),
    `offsetForTimestamp(${target})`,
  );
}

async function stepRetention(run: Run): Promise<void> {
  const bases = run.log.segmentBaseOffsets();
  const nowMs = run.clockMs + run.random.int(-2000, 2000);
  const expected = run.model.expectedRetention(bases, run.config, nowMs);
  assert.equal(await run.log.applyRetention(nowMs), expected, `applyRetention(${nowMs})`);
  const start = bases[expected]!;
  assert.deepEqual(run.log.segmentBaseOffsets(), bases.slice(expected));
  assert.equal(run.log.logStartOffset, start);
  run.model.dropBefore(start);
  if (start > 0) {
    assert.throws(() => run.log.read(start - 1, 100), sluiceCode("OFFSET_OUT_OF_RANGE"));
  }
}

async function stepReopen(run: Run, how: "clean" | "marker lost" | "crash"): Promise<void> {
  const before = {
    start: run.log.logStartOffset,
    end: run.log.logEndOffset,
    bases: run.log.segmentBaseOffsets(),
    size: run.log.sizeBytes,
  };
  if (how === "crash") {
    // A process crash: the files as they are now, with no close. Every acknowledged batch has
    // been written, so recovery must find all of them (nothing is fsynced by the copy).
    run.generation++;
    const copy = join(run.root, `gen-${run.generation}`);
    copyDir(run.dir, copy);
    await run.log.close();
    run.dir = copy;
  } else {
    await run.log.close();
    if (how === "marker lost") fs.rmSync(join(run.dir, ".clean-shutdown"));
  }
  run.log = await openFor(run);
  assert.deepEqual(run.log.corruptions, [], `${how} reopen finds no corruption`);
  assert.deepEqual(
    {
      start: run.log.logStartOffset,
      end: run.log.logEndOffset,
      bases: run.log.segmentBaseOffsets(),
      size: run.log.sizeBytes,
    },
    before,
    `${how} reopen keeps the log as it was`,
  );
}

function checkInvariants(run: Run): void {
  const { log, model, config } = run;
  assert.equal(log.logStartOffset, model.logStartOffset, "logStartOffset");
  assert.equal(log.logEndOffset, model.logEndOffset, "logEndOffset");
  assert.equal(log.highWatermark, model.logEndOffset, "every acknowledged batch is visible");
  assert.equal(log.sizeBytes, model.sizeBytes, "sizeBytes");
  const bases = log.segmentBaseOffsets();
  const batchStarts = new Set(model.batches.map((b) => b.baseOffset));
  const onDisk = logFileSizes(run.dir);
  assert.deepEqual([...onDisk.keys()], bases, "one .log file per segment");
  for (const [i, [base, size]] of model.segments(bases).entries()) {
    if (size > 0) assert.ok(batchStarts.has(base), `segment ${base} starts at a batch`);
    assert.ok(size <= config.segmentBytes, `segment ${base} of ${size} bytes`);
    assert.equal(onDisk.get(base), size, `segment ${base} file size`);
    if (i > 0) assert.ok(base > bases[i - 1]!, "segment bases increase");
  }
}

async function readEverything(run: Run): Promise<void> {
  let offset = run.model.logStartOffset;
  const records: PlainRecord[] = [];
  while (offset < run.model.logEndOffset) {
    const result = run.log.read(offset, run.random.int(1, 300_000));
    for (const batch of decodeRead(result)) records.push(...batch.records);
    offset = result.nextOffset;
  }
  assert.deepEqual(
    records,
    run.model.batches.flatMap((b) => b.records),
    "a full read",
  );
}

const STEP_WEIGHTS = {
  append: 30,
  burst: 6,
  read: 28,
  time: 10,
  flush: 3,
  retention: 4,
  clean: 3,
  "marker lost": 1,
  crash: 2,
  scan: 2,
};

async function runStep(run: Run, step: keyof typeof STEP_WEIGHTS): Promise<void> {
  switch (step) {
    case "append":
      return stepAppend(run, 1);
    case "burst":
      return stepAppend(run, run.random.int(2, 12));
    case "read":
      return stepRead(run);
    case "time":
      return stepOffsetForTimestamp(run);
    case "flush":
      await run.log.flush();
      assert.equal(run.log.recoveryPoint, run.model.logEndOffset, "flush reaches the log end");
      return;
    case "retention":
      return stepRetention(run);
    case "clean":
    case "marker lost":
    case "crash":
      return stepReopen(run, step);
    case "scan":
      return readEverything(run);
  }
}

async function runSeed(seed: number): Promise<void> {
  using root = tempDir("sluice-model-");
  const random = new Random(seed);
  const config = randomConfig(random);
  const run: Run = {
    seed,
    random,
    config,
    model: new Model(),
    dir: join(root.path, "gen-0"),
    root: root.path,
    generation: 0,
    clockMs: BASE_TIMESTAMP_MS,
    nextTag: 0,
    log: undefined as unknown as PartitionLog,
  };
  run.log = await openFor(run);
  const history: string[] = [];
  try {
    for (let index = 0; index < STEPS_PER_SEED; index++) {
      run.clockMs += random.int(0, 40);
      const step = random.weighted(STEP_WEIGHTS);
      history.push(`${index}:${step}`);
      await runStep(run, step);
      checkInvariants(run);
    }
    await readEverything(run);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(
      `model test failed with SLUICE_SEED=${seed} (config ${JSON.stringify(config)}) ` +
        `after steps ${history.slice(-8).join(" ")}: ${message}`,
      { cause: error },
    );
  } finally {
    await run.log.close();
  }
}

for (const seed of seedsForRun()) {
  test(`partition log agrees with its model over random operations (seed ${seed})`, async () => {
    await runSeed(seed);
  });
}
