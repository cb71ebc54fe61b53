// Kill -9 tests: a child process (crash_child.ts) appends numbered batches with several appends
// in flight and prints each acknowledgement; the parent kills it at a random acknowledgement
// count, reopens the log, and checks that every acknowledged batch is there, byte for byte, at
// the offset it was acknowledged with. The next cycle appends on top of the recovered log, so
// recovery keeps running on data that an earlier recovery produced.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { loadDirectWrites } from "../../engine/direct_io.ts";
import { type FileIO, realFileIO } from "../../engine/io.ts";
import { CLEAN_SHUTDOWN_FILE } from "../../engine/log_open.ts";
import { decodeRecordBatches, PartitionLog } from "../../engine/mod.ts";
import { batchSizeAt, baseOffsetAt } from "../../record/mod.ts";
import { mulberry32, runtimeArgv, tempDir, waitFor } from "../helpers.ts";
import {
  CRASH_INDEX_INTERVAL_BYTES,
  CRASH_SEGMENT_BYTES,
  crashBatch,
  seqOfValue,
} from "./crash_child.ts";

const CHILD = join(import.meta.dirname, "crash_child.ts");
/** The most acknowledgements a cycle waits for: about one segment's worth of batches. */
const ACKS_PER_CYCLE_MAX = 500;
/** A cycle that takes longer than this has hung: the child is killed and the test fails. */
const CYCLE_MS_MAX = 20_000;
/**
 * The seed of the kill points; SLUICE_TEST_SEED sets it. A replay kills at the same counts, but
 * what was in flight at each kill depends on timing, so a failure may need a few runs.
 */
const SEED = Number(process.env["SLUICE_TEST_SEED"] ?? Date.now() % 1_000_000);

type Fsync = "always" | "never";
type Ack = { baseOffset: number; lastOffset: number; seq: number };
type CycleResult = { acks: Ack[]; openEnd: number; stderr: string };

function parseAck(line: string): Ack {
  const [baseOffset, lastOffset, seq] = line.split(" ").map(Number);
  assert.ok(seq !== undefined && Number.isSafeInteger(seq), `ack line "${line}"`);
  return { baseOffset: baseOffset!, lastOffset: lastOffset!, seq };
}

/** Runs the child until it has acknowledged `ackTarget` batches, then SIGKILLs it. */
async function runUntilKilled(
  dir: string,
  firstSeq: number,
  fsync: Fsync,
  ackTarget: number,
  direct: boolean,
): Promise<CycleResult> {
  const args = [dir, String(firstSeq), fsync, ...(direct ? ["direct"] : [])];
  const [command, argv] = runtimeArgv(CHILD, args);
  const child = spawn(command, argv, { stdio: ["pipe", "pipe", "pipe"] });
  const result: CycleResult = { acks: [], openEnd: -1, stderr: "" };
  let pending = "";
  let killed = false;
  let ended: string | undefined;
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (text: string) => {
    result.stderr += text;
  });
  child.stdout.on("data", (text: string) => {
    pending += text;
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) {
      if (line.startsWith("open ")) result.openEnd = Number(line.slice(5));
      else result.acks.push(parseAck(line));
    }
    if (!killed && result.openEnd !== -1 && result.acks.length >= ackTarget) {
      killed = true;
      child.kill("SIGKILL");
    }
  });
  child.on("error", (error) => {
    ended = `error ${error.message}`;
  });
  // "close" comes after the exit and after stdout is drained: every printed ack is in.
  child.on("close", (code, signal) => {
    ended = signal ?? `exit code ${code}`;
  });
  try {
    await waitFor(() => ended !== undefined, `the child to ack ${ackTarget} batches`, CYCLE_MS_MAX);
  } finally {
    if (ended === undefined) child.kill("SIGKILL");
  }
  assert.ok(
    killed && ended === "SIGKILL",
    `child ended (${ended}) before the kill: ${result.stderr}`,
  );
  return result;
}

/** What the parent knows about the log between cycles. */
type Model = {
  /** Batches verified so far, in log order: batch i carries seq i. */
  baseOffsets: number[];
  logEndOffset: number;
  /** Every acknowledgement of every cycle. */
  acks: Ack[];
  /** Batches found past the acknowledged ones: written, or acknowledged but not yet printed. */
  unackedFound: number;
  segmentCount: number;
};

/** Expected bytes of batch `seq` as stored: crashBatch(seq) with its base offset patched. */
function sameBatch(actual: Uint8Array, seq: number, context: string): void {
  const expected = crashBatch(seq);
  assert.equal(actual.length, expected.length, `${context}: batch size`);
  // Bytes 0-7 hold the base offset the log assigned; everything after must be as written.
  const differs = actual.subarray(8).some((byte, i) => byte !== expected[8 + i]);
  assert.ok(!differs, `${context}: bytes differ from what was written`);
}

/** Reads the whole log and checks it against the model; returns the batches found. */
function readAndCheck(log: PartitionLog, model: Model, context: string): number[] {
  const baseOffsets: number[] = [];
  let offset = log.logStartOffset;
  assert.equal(offset, 0, `${context}: log starts at offset 0`);
  while (offset < log.highWatermark) {
    const read = log.read(offset, 1024 * 1024);
    assert.ok(read.views.length > 0, `${context}: read at ${offset} returned nothing`);
    for (const view of read.views) {
      for (let at = 0; at < view.length; at += batchSizeAt(view, at)) {
        const seq = baseOffsets.length;
        const where = `${context}: batch ${seq}`;
        const batch = view.subarray(at, at + batchSizeAt(view, at));
        assert.equal(baseOffsetAt(batch, 0), offset, `${where}: offsets are contiguous`);
        sameBatch(batch, seq, where);
        if (seq >= model.baseOffsets.length) {
          // New since the last check: decode it too (decoding checks the CRC again).
          const [decoded] = [...decodeRecordBatches(batch)];
          assert.equal(seqOfValue(decoded!.records[0]!.value), seq, `${where}: sequence`);
        } else {
          assert.equal(offset, model.baseOffsets[seq], `${where}: moved since last check`);
        }
        baseOffsets.push(offset);
        offset += 1 + (seq % 4);
      }
    }
    assert.equal(read.nextOffset, offset, `${context}: nextOffset`);
  }
  assert.equal(offset, log.logEndOffset, `${context}: the read ends at the log end`);
  return baseOffsets;
}

async function verifyCycle(
  dir: string,
  model: Model,
  cycle: CycleResult,
  context: string,
  direct: boolean,
) {
  assert.equal(cycle.openEnd, model.logEndOffset, `${context}: child opened at the known end`);
  const warnings: string[] = [];
  const log = await PartitionLog.open(
    dir,
    { segmentBytes: CRASH_SEGMENT_BYTES, indexIntervalBytes: CRASH_INDEX_INTERVAL_BYTES },
    { onWarning: (message) => warnings.push(message) },
  );
  try {
    assert.deepEqual(log.corruptions, [], `${context}: a kill leaves no mid-log damage`);
    for (const warning of warnings) {
      // A kill can tear the tail, or land just after a roll created an empty next segment.
      // Direct writes (rounds of a few KiB here, one write each, which a kill does not cut)
      // leave zero padding instead, which is cut without a word.
      assert.match(
        warning,
        direct ? /empty segment past the end/ : /torn tail|empty segment past the end/,
        `${context}: only torn tails and empty rolled segments are reported`,
      );
    }
    const baseOffsets = readAndCheck(log, model, context);
    assert.ok(baseOffsets.length >= model.baseOffsets.length, `${context}: nothing was lost`);
    for (const ack of cycle.acks) {
      const where = `${context}: acknowledged seq ${ack.seq}`;
      assert.ok(ack.seq < baseOffsets.length, `${where} is in the log`);
      assert.equal(baseOffsets[ack.seq], ack.baseOffset, `${where}: base offset`);
      assert.equal(ack.lastOffset, ack.baseOffset + (ack.seq % 4), `${where}: last offset`);
    }
    const ackedEnd = Math.max(model.baseOffsets.length, ...cycle.acks.map((a) => a.seq + 1));
    model.unackedFound += baseOffsets.length - ackedEnd;
    model.baseOffsets = baseOffsets;
    model.logEndOffset = log.logEndOffset;
    model.segmentCount = log.segmentBaseOffsets().length;
    model.acks.push(...cycle.acks);
  } finally {
    await log.close();
  }
}

async function killCycles(
  fsync: Fsync,
  cycles: number,
  seed: number,
  direct = false,
): Promise<Model> {
  using dir = tempDir("sluice-crash-");
  const random = mulberry32(seed);
  const model: Model = {
    baseOffsets: [],
    logEndOffset: 0,
    acks: [],
    unackedFound: 0,
    segmentCount: 0,
  };
  for (let i = 0; i < cycles; i++) {
    // One kill in ten comes right after the open, before any acknowledgement.
    const ackTarget = random() < 0.1 ? 0 : 1 + Math.floor(random() * ACKS_PER_CYCLE_MAX);
    const writes = direct ? "direct" : "buffered";
    const kill = `kill after ${ackTarget} acks`;
    const context = `seed ${seed}, fsync ${fsync}, ${writes}, cycle ${i} (${kill})`;
    const first = model.baseOffsets.length;
    const cycle = await runUntilKilled(dir.path, first, fsync, ackTarget, direct);
    await verifyCycle(dir.path, model, cycle, context, direct);
    // Half the time, make the child's open a recovery too (the marker gone as after a crash).
    if (random() < 0.5) rmSync(join(dir.path, CLEAN_SHUTDOWN_FILE));
  }
  return model;
}

/** A FileIO whose writes fail from the moment `failing` is set: the process "died" there. */
function dyingFileIO(): FileIO & { failing: boolean } {
  return {
    ...realFileIO,
    failing: false,
    writeAll(fd, buffers, position) {
      if (this.failing) return Promise.reject(Object.assign(new Error("EIO"), { code: "EIO" }));
      return realFileIO.writeAll(fd, buffers, position);
    },
  };
}

describe("a crash at a segment roll", () => {
  test("a crash before the rolled segment's tail is written leaves no offset gap", async () => {
    using dir = tempDir("sluice-crash-");
    const io = dyingFileIO();
    const config = { segmentBytes: 4096, fsync: "always" as const };
    const log = await PartitionLog.open(dir.path, config, { io });
    let seq = 0;
    while (log.sizeBytes + 2 * crashBatch(seq).length < 4096) await log.append(crashBatch(seq++));
    const writtenEnd = log.logEndOffset;
    // The writer dies with two appends in memory: the first fits the segment, the second
    // rolls to a new segment whose base offset counts the first. Neither reaches the file.
    io.failing = true;
    const lost = [log.append(crashBatch(seq)), log.append(crashBatch(seq + 1))];
    assert.equal(log.segmentBaseOffsets().length, 2, "the second append rolled");
    await Promise.allSettled(lost);
    await log.close();
    const recovered = await PartitionLog.open(dir.path, config, { onWarning: () => {} });
    try {
      assert.equal(recovered.logEndOffset, writtenEnd, "the log ends after the written batches");
      const appended = await recovered.append(crashBatch(seq));
      assert.equal(appended.baseOffset, writtenEnd, "offsets stay contiguous");
      const read = recovered.read(writtenEnd, 1024 * 1024);
      assert.equal(baseOffsetAt(read.views[0]!, 0), writtenEnd);
    } finally {
      await recovered.close();
    }
  });
});

describe("crash recovery after SIGKILL", () => {
  test("no acknowledged batch is lost or changed across 50 kills with fsync always", {
    timeout: 120_000,
  }, async () => {
    const model = await killCycles("always", 50, SEED);
    // The kills must have landed while the log was busy, across many segment rolls.
    assert.ok(model.acks.length > 1000, `seed ${SEED}: only ${model.acks.length} acks`);
    assert.ok(model.unackedFound > 0, `seed ${SEED}: no kill found a batch in flight`);
    assert.ok(model.segmentCount >= 10, `seed ${SEED}: only ${model.segmentCount} segments`);
  });

  test("no acknowledged batch is lost with fsync never: a process kill keeps the page cache", {
    timeout: 60_000,
  }, async () => {
    const model = await killCycles("never", 6, SEED);
    assert.ok(model.acks.length > 0, `seed ${SEED}: no acks`);
  });
});

describe("crash recovery after SIGKILL, segments written with O_DIRECT", () => {
  // Each kill may leave a segment ending in the zero padding of a direct write (direct_io.ts):
  // recovery must cut it quietly, and the next child, appending on top, must read the last
  // partial block back before writing it again.
  test("no acknowledged batch is lost or changed across 30 kills", {
    timeout: 120_000,
  }, async (t) => {
    using probe = tempDir("sluice-direct-probe-");
    if ((await loadDirectWrites(probe.path)) === undefined) {
      t.skip("no O_DIRECT writes here (Bun on Linux, and a file system that takes them)");
      return;
    }
    const model = await killCycles("always", 30, SEED, true);
    assert.ok(model.acks.length > 500, `seed ${SEED}: only ${model.acks.length} acks`);
    assert.ok(model.unackedFound > 0, `seed ${SEED}: no kill found a batch in flight`);
    assert.ok(model.segmentCount >= 5, `seed ${SEED}: only ${model.segmentCount} segments`);
  });
});
