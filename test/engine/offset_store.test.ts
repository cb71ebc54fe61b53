import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { isSluiceError, type SluiceError } from "../../record/mod.ts";
import {
  COMMIT_ENTRIES_MAX,
  METADATA_BYTES_MAX,
  NAME_BYTES_MAX,
  OffsetStore,
  type OffsetStoreOptions,
} from "../../engine/offset_store.ts";
import { mulberry32, PROJECT_ROOT, runtimeArgv, tempDir, waitFor } from "../helpers.ts";

const LIVE_FILE = /^\d{20}\.log$/;
/** For tests that open hundreds of stores or spawn processes: bun's default is 5 s a test. */
const SLOW = { timeout: 120_000 };
const FIRST_FILE = "00000000000000000000.log";

/** Every offset in the store as sorted text lines, for whole-state comparisons. */
function dump(store: OffsetStore): string[] {
  const lines: string[] = [];
  for (const group of store.groups()) {
    for (const [topic, partitions] of store.fetchGroup(group)) {
      for (const [partition, c] of partitions) {
        const value = `${c.offset}:${c.metadata}:${c.leaderEpoch ?? -1}@${c.commitTimestampMs}`;
        lines.push(`${group}/${topic}/${partition}=${value}`);
      }
    }
  }
  return lines.sort();
}

function liveFiles(dir: string): string[] {
  return readdirSync(dir).filter((name) => LIVE_FILE.test(name));
}

function liveFile(dir: string): string {
  const names = liveFiles(dir);
  assert.equal(names.length, 1, `one live file in ${dir}: ${names.join(", ")}`);
  return join(dir, names[0]!);
}

/** A deterministic clock: each call returns the next millisecond. */
function counterClock(start = 1_000): () => number {
  let now = start;
  return () => now++;
}

/** Writes `bytes` as the only file of a fresh store directory and returns the directory. */
function storeDirWith(parent: string, name: string, bytes: Uint8Array): string {
  const dir = join(parent, name);
  mkdirSync(dir);
  writeFileSync(join(dir, FIRST_FILE), bytes);
  return dir;
}

async function expectReject(
  call: () => Promise<unknown>,
  type: typeof TypeError | typeof RangeError,
  message: RegExp,
): Promise<void> {
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof type, `${String(error)} is a ${type.name}`);
    assert.match((error as Error).message, message);
    return true;
  });
}

test("commit resolves once fetch sees the offsets, and a reopen keeps them", async () => {
  using dir = tempDir();
  const store = await OffsetStore.open(dir.path, { now: () => 1_700_000_000_000 });
  await store.commit("billing", [
    { topic: "orders", partition: 0, offset: 42, metadata: "host-a" },
    { topic: "orders", partition: 3, offset: 7, leaderEpoch: 5 },
    { topic: "refunds", partition: 1, offset: -1 },
  ]);
  assert.deepEqual(store.fetch("billing", "orders", 0), {
    offset: 42,
    metadata: "host-a",
    commitTimestampMs: 1_700_000_000_000,
  });
  assert.equal(store.fetch("billing", "orders", 3)?.leaderEpoch, 5);
  assert.equal(store.fetch("billing", "refunds", 1)?.offset, -1);
  assert.equal(store.fetch("billing", "orders", 1), undefined);
  assert.equal(store.fetch("nobody", "orders", 0), undefined);
  await store.commit("billing", [{ topic: "orders", partition: 0, offset: 50 }]);
  assert.equal(store.fetch("billing", "orders", 0)?.offset, 50);
  assert.equal(store.fetch("billing", "orders", 0)?.metadata, "");
  const before = dump(store);
  await store.close();

  const reopened = await OffsetStore.open(dir.path);
  assert.deepEqual(dump(reopened), before);
  assert.deepEqual(reopened.groups(), ["billing"]);
  assert.deepEqual([...reopened.fetchGroup("billing").keys()].sort(), ["orders", "refunds"]);
  assert.equal(reopened.fetchGroup("nobody").size, 0);
  await reopened.close();
});

test("fetchGroup returns a copy the caller cannot use to change the store", async () => {
  using dir = tempDir();
  await using store = await OffsetStore.open(dir.path, { fsync: false });
  await store.commit("g", [{ topic: "t", partition: 0, offset: 1 }]);
  const copy = store.fetchGroup("g");
  copy.get("t")?.delete(0);
  copy.delete("t");
  assert.equal(store.fetch("g", "t", 0)?.offset, 1);
  assert.ok(Object.isFrozen(store.fetch("g", "t", 0)));
});

test("commits made in the same tick share one write and one fdatasync", async () => {
  using dir = tempDir();
  await using store = await OffsetStore.open(dir.path);
  await store.commit("warm-up", [{ topic: "t", partition: 0, offset: 0 }]);
  const before = store.stats;
  const calls: Promise<void>[] = [];
  for (let i = 0; i < 50; i++) {
    calls.push(store.commit(`group-${i}`, [{ topic: "t", partition: i % 4, offset: i }]));
  }
  calls.push(store.deleteGroup("warm-up"));
  await Promise.all(calls);
  const after = store.stats;
  assert.equal(after.writes - before.writes, 1);
  assert.equal(after.fsyncs - before.fsyncs, 1);
  assert.equal(store.groups().length, 50);
  assert.equal(after.liveEntries, 50);
});

test("commits that arrive during a write go out together in the next one", async () => {
  using dir = tempDir();
  await using store = await OffsetStore.open(dir.path);
  const first = store.commit("g", [{ topic: "t", partition: 0, offset: 1 }]);
  // Queued after the first write has started: they wait for it, then share one more write.
  await Promise.resolve();
  await Promise.resolve();
  const rest = Array.from({ length: 20 }, (_, i) =>
    store.commit("g", [{ topic: "t", partition: 0, offset: 2 + i }]),
  );
  await Promise.all([first, ...rest]);
  assert.ok(store.stats.fsyncs <= 3, `${store.stats.fsyncs} fsyncs for 21 commits`);
  assert.equal(store.fetch("g", "t", 0)?.offset, 21);
});

test("fsync: false acknowledges after the write without an fdatasync", async () => {
  using dir = tempDir();
  const store = await OffsetStore.open(dir.path, { fsync: false });
  for (let i = 0; i < 5; i++) await store.commit("g", [{ topic: "t", partition: 0, offset: i }]);
  assert.equal(store.stats.fsyncs, 0);
  assert.equal(store.stats.writes, 5);
  await store.close();
  const reopened = await OffsetStore.open(dir.path);
  assert.equal(reopened.fetch("g", "t", 0)?.offset, 4);
  await reopened.close();
});

test("deleteGroup and deleteTopic forget offsets durably", async () => {
  using dir = tempDir();
  const store = await OffsetStore.open(dir.path, { fsync: false });
  await store.commit("a", [
    { topic: "t1", partition: 0, offset: 1 },
    { topic: "t2", partition: 0, offset: 2 },
  ]);
  await store.commit("b", [{ topic: "t1", partition: 1, offset: 3 }]);
  await store.commit("c", [
    { topic: "t2", partition: 0, offset: 4 },
    { topic: "t3", partition: 0, offset: 5 },
  ]);
  await store.deleteTopic("t1");
  // Group b held only t1: a group is listed while it holds an offset.
  assert.deepEqual(store.groups().sort(), ["a", "c"]);
  assert.equal(store.fetch("a", "t1", 0), undefined);
  assert.equal(store.fetch("a", "t2", 0)?.offset, 2);
  await store.deleteGroup("c");
  await store.deleteGroup("never-existed");
  await store.deleteTopic("never-existed");
  assert.deepEqual(store.groups(), ["a"]);
  assert.equal(store.stats.liveEntries, 1);
  const before = dump(store);
  await store.close();
  const reopened = await OffsetStore.open(dir.path);
  assert.deepEqual(dump(reopened), before);
  assert.equal(reopened.stats.liveEntries, 1);
  await reopened.close();
});

test("many groups, topics and partitions survive a reopen", async () => {
  using dir = tempDir();
  const store = await OffsetStore.open(dir.path, { fsync: false, now: counterClock() });
  const calls: Promise<void>[] = [];
  for (let g = 0; g < 300; g++) {
    const entries = [];
    for (let t = 0; t < 5; t++) {
      for (let p = 0; p < 4; p++) {
        entries.push({ topic: `topic-${t}`, partition: p, offset: g * 1000 + t * 10 + p });
      }
    }
    calls.push(store.commit(`group-${g}`, entries));
  }
  await Promise.all(calls);
  assert.equal(store.groups().length, 300);
  assert.equal(store.stats.liveEntries, 300 * 20);
  const before = dump(store);
  await store.close();
  const reopened = await OffsetStore.open(dir.path);
  assert.deepEqual(dump(reopened), before);
  assert.equal(reopened.fetch("group-123", "topic-4", 3)?.offset, 123_043);
  await reopened.close();
});

test("bad arguments throw TypeError or RangeError naming the value", async () => {
  using dir = tempDir();
  await using store = await OffsetStore.open(dir.path, { fsync: false });
  const entry = { topic: "t", partition: 0, offset: 0 };
  const commit = (group: unknown, entries: unknown) => () =>
    store.commit(group as string, entries as []);
  await expectReject(commit(7, [entry]), TypeError, /group must be a string: 7/);
  await expectReject(commit("", [entry]), RangeError, /group must not be empty/);
  const long = "x".repeat(NAME_BYTES_MAX + 1);
  await expectReject(commit(long, [entry]), RangeError, /group of 256 bytes exceeds 255: "xxx/);
  // 128 two-byte characters are 256 bytes of UTF-8: the limit counts bytes, not characters.
  await expectReject(commit("é".repeat(128), [entry]), RangeError, /256 bytes exceeds 255/);
  await expectReject(commit("\ud800", [entry]), TypeError, /not valid UTF-16/);
  await expectReject(commit("g", "nope"), TypeError, /entries must be an array: "nope"/);
  const tooMany = Array.from({ length: COMMIT_ENTRIES_MAX + 1 }, () => entry);
  await expectReject(commit("g", tooMany), RangeError, /entry count 10001 is not in \[0, 10000\]/);
  await expectReject(commit("g", [null]), TypeError, /entry must be an object: null/);
  const bad = (fields: object) => commit("g", [{ ...entry, ...fields }]);
  await expectReject(bad({ topic: 1 }), TypeError, /topic must be a string: 1/);
  await expectReject(bad({ topic: "" }), RangeError, /topic must not be empty/);
  await expectReject(
    bad({ partition: -1 }),
    RangeError,
    /partition -1 is not in \[0, 2147483647\]/,
  );
  await expectReject(bad({ partition: 2 ** 31 }), RangeError, /partition 2147483648/);
  await expectReject(bad({ partition: 1.5 }), TypeError, /partition must be a safe integer: 1.5/);
  await expectReject(bad({ partition: "0" }), TypeError, /partition must be a safe integer: "0"/);
  await expectReject(bad({ offset: -2 }), RangeError, /offset -2 is not in \[-1, /);
  await expectReject(bad({ offset: 2 ** 53 }), TypeError, /offset must be a safe integer/);
  await expectReject(bad({ offset: Number.NaN }), TypeError, /offset must be a safe integer: NaN/);
  await expectReject(bad({ offset: 5n }), TypeError, /offset must be a safe integer: 5n/);
  await expectReject(bad({ leaderEpoch: -2 }), RangeError, /leaderEpoch -2/);
  const metadata = "m".repeat(METADATA_BYTES_MAX + 1);
  await expectReject(bad({ metadata }), RangeError, /metadata of 4097 bytes exceeds 4096/);
  await expectReject(bad({ metadata: 3 }), TypeError, /metadata must be a string: 3/);
  await expectReject(() => store.deleteGroup(""), RangeError, /group must not be empty/);
  await expectReject(() => store.deleteTopic({} as string), TypeError, /an object/);
  assert.throws(() => store.fetch("g", "t", -1), RangeError);
  assert.throws(() => store.fetchGroup(null as unknown as string), TypeError);
  // Nothing above reached the file, and the limits themselves are accepted.
  assert.equal(store.stats.writes, 0);
  await store.commit("x".repeat(NAME_BYTES_MAX), [
    { ...entry, metadata: "m".repeat(METADATA_BYTES_MAX), offset: Number.MAX_SAFE_INTEGER },
  ]);
  assert.equal(store.fetch("x".repeat(NAME_BYTES_MAX), "t", 0)?.offset, Number.MAX_SAFE_INTEGER);
});

test("open rejects bad options", async () => {
  using dir = tempDir();
  const open = (options: unknown) => () =>
    OffsetStore.open(dir.path, options as OffsetStoreOptions);
  await expectReject(open({ fsync: "yes" }), TypeError, /fsync must be a boolean: "yes"/);
  await expectReject(open({ compactAfterBytes: 0 }), RangeError, /compactAfterBytes 0 is not/);
  await expectReject(open({ compactAfterBytes: 1.5 }), TypeError, /compactAfterBytes must be/);
  await expectReject(open({ now: 5 }), TypeError, /now must be a function: 5/);
  await expectReject(open({ onCorruption: true }), TypeError, /onCorruption must be a function/);
  await expectReject(() => OffsetStore.open(""), TypeError, /dir must be a non-empty string/);
  const store = await OffsetStore.open(dir.path, { now: () => 1.5 });
  await expectReject(
    () => store.commit("g", [{ topic: "t", partition: 0, offset: 0 }]),
    TypeError,
    /now\(\) must be a safe integer: 1.5/,
  );
  await store.close();
});

test("close waits for commits in flight; afterwards every call fails LOG_CLOSED", async () => {
  using dir = tempDir();
  const store = await OffsetStore.open(dir.path);
  const inFlight = store.commit("g", [{ topic: "t", partition: 0, offset: 9 }]);
  const closed = store.close();
  assert.equal(store.close(), closed, "close is idempotent");
  await Promise.all([inFlight, closed]);
  const isClosed = (error: unknown) => isSluiceError(error, "LOG_CLOSED");
  await assert.rejects(store.commit("g", [{ topic: "t", partition: 0, offset: 10 }]), isClosed);
  await assert.rejects(store.deleteGroup("g"), isClosed);
  await assert.rejects(store.deleteTopic("t"), isClosed);
  assert.throws(() => store.fetch("g", "t", 0), isClosed);
  assert.throws(() => store.groups(), isClosed);
  const reopened = await OffsetStore.open(dir.path);
  assert.equal(reopened.fetch("g", "t", 0)?.offset, 9);
  await reopened.close();
});

test("compaction keeps every offset in one smaller file, and a reopen reads it back", async () => {
  using dir = tempDir();
  const options = { fsync: false, compactAfterBytes: 1024, now: counterClock() };
  const store = await OffsetStore.open(dir.path, options);
  for (let i = 0; i < 400; i++) {
    await store.commit(`g${i % 3}`, [
      { topic: `t${i % 4}`, partition: i % 5, offset: i, metadata: `meta-${i}`, leaderEpoch: i },
    ]);
    if (i % 50 === 0) await store.deleteTopic("t3");
  }
  const stats = store.stats;
  assert.ok(stats.compactions >= 5, `${stats.compactions} compactions`);
  assert.equal(stats.generation, stats.compactions);
  assert.equal(stats.compactionFailures, 0);
  assert.ok(stats.logBytes < 4096, `${stats.logBytes} bytes after compaction`);
  assert.deepEqual(readdirSync(dir.path), [liveFile(dir.path).slice(dir.path.length + 1)]);
  assert.equal(statSync(liveFile(dir.path)).size, stats.logBytes);
  const before = dump(store);
  await store.close();

  const reopened = await OffsetStore.open(dir.path);
  assert.deepEqual(dump(reopened), before);
  assert.equal(reopened.stats.generation, stats.generation);
  assert.equal(reopened.fetch("g0", "t2", 4)?.metadata, "meta-354");
  assert.equal(reopened.fetch("g0", "t2", 4)?.leaderEpoch, 354);
  await reopened.close();
});

test("a compaction's snapshot may span many frames", async () => {
  using dir = tempDir();
  const store = await OffsetStore.open(dir.path, { fsync: false, compactAfterBytes: 64 * 1024 });
  // 2500 live entries in one group, then rewrites of one of them until half the log is stale.
  const entries = Array.from({ length: 2500 }, (_, p) => ({ topic: "t", partition: p, offset: p }));
  await store.commit("big", entries);
  for (let i = 0; store.stats.compactions === 0; i++) {
    assert.ok(i < 10_000, "compaction happened");
    await store.commit("small", [
      { topic: "t", partition: 0, offset: i, metadata: "x".repeat(40) },
    ]);
  }
  const before = dump(store);
  await store.close();
  const reopened = await OffsetStore.open(dir.path);
  assert.deepEqual(dump(reopened), before);
  assert.equal(reopened.stats.liveEntries, 2501);
  await reopened.close();
});

type ModelEntry = { group: string; topic: string; line: string };

test("random commits, deletes and reopens match a model", SLOW, async () => {
  for (const seed of [1, 2, 3]) {
    using dir = tempDir();
    const random = mulberry32(seed);
    const pick = (n: number) => Math.floor(random() * n);
    const model = new Map<string, ModelEntry>();
    const options = { fsync: false, compactAfterBytes: 2048, now: counterClock() };
    let store = await OffsetStore.open(dir.path, options);
    for (let step = 0; step < 600; step++) {
      const roll = random();
      if (roll < 0.8) {
        const group = `g${pick(6)}`;
        const entries = Array.from({ length: 1 + pick(4) }, () => ({
          topic: `t${pick(5)}`,
          partition: pick(3),
          offset: pick(1_000_000),
          metadata: pick(2) === 0 ? "" : `m${pick(100)}`,
        }));
        await store.commit(group, entries);
        for (const e of entries) {
          const c = store.fetch(group, e.topic, e.partition)!;
          const key = `${group}/${e.topic}/${e.partition}`;
          const line = `${key}=${c.offset}:${c.metadata}:-1@${c.commitTimestampMs}`;
          model.set(key, { group, topic: e.topic, line });
        }
      } else if (roll < 0.87) {
        const group = `g${pick(6)}`;
        await store.deleteGroup(group);
        for (const [key, entry] of model) if (entry.group === group) model.delete(key);
      } else if (roll < 0.94) {
        const topic = `t${pick(5)}`;
        await store.deleteTopic(topic);
        for (const [key, entry] of model) if (entry.topic === topic) model.delete(key);
      } else {
        await store.close();
        store = await OffsetStore.open(dir.path, options);
      }
      const expected = [...model.values()].map((entry) => entry.line).sort();
      assert.deepEqual(dump(store), expected, `seed ${seed}, step ${step}`);
    }
    assert.ok(store.stats.compactions > 0 || store.stats.generation > 0, `seed ${seed} compacted`);
    await store.close();
  }
});

test("open finishes a compaction cut short: the newest generation wins, leftovers go", async () => {
  using dir = tempDir();
  const store = await OffsetStore.open(dir.path, { fsync: false, compactAfterBytes: 256 });
  for (let i = 0; store.stats.generation < 2; i++) {
    await store.commit("g", [{ topic: "t", partition: 0, offset: i }]);
  }
  const before = dump(store);
  const generation = store.stats.generation;
  await store.close();
  // An older generation whose delete did not happen, and a snapshot that never got renamed.
  writeFileSync(join(dir.path, "00000000000000000001.log"), "stale generation");
  const temp = `${String(generation + 1).padStart(20, "0")}.log.tmp`;
  writeFileSync(join(dir.path, temp), "half a snapshot");
  const reopened = await OffsetStore.open(dir.path);
  assert.deepEqual(dump(reopened), before);
  assert.equal(reopened.stats.generation, generation);
  assert.deepEqual(readdirSync(dir.path), [`${String(generation).padStart(20, "0")}.log`]);
  await reopened.close();
});

/** Builds a store whose file holds `frames` commit frames; returns the bytes and boundaries. */
async function framedFile(
  dir: string,
  frames: number,
): Promise<{ bytes: Buffer; ends: number[]; dumps: string[][] }> {
  const store = await OffsetStore.open(dir, { fsync: false, now: counterClock() });
  const ends: number[] = [];
  const dumps: string[][] = [];
  for (let f = 0; f < frames; f++) {
    // Each frame commits its own two partitions, so a lost frame shows as two missing lines.
    await store.commit("g", [
      { topic: "t", partition: 2 * f, offset: 100 + f, metadata: `frame ${f}` },
      { topic: "t", partition: 2 * f + 1, offset: 200 + f },
    ]);
    ends.push(store.stats.logBytes);
    dumps.push(dump(store));
  }
  await store.close();
  const bytes = readFileSync(join(dir, FIRST_FILE));
  assert.equal(bytes.length, ends.at(-1));
  return { bytes, ends, dumps };
}

test("a torn final frame, cut at every length, reopens to the state before it", SLOW, async () => {
  using dir = tempDir();
  const { bytes, ends, dumps } = await framedFile(join(dir.path, "source"), 3);
  const lastStart = ends[1]!;
  for (let cut = lastStart; cut < bytes.length; cut++) {
    const caseDir = storeDirWith(dir.path, `cut-${cut}`, bytes.subarray(0, cut));
    const store = await OffsetStore.open(caseDir);
    assert.deepEqual(dump(store), dumps[1], `cut at ${cut}`);
    assert.equal(store.stats.logBytes, lastStart);
    assert.equal(statSync(join(caseDir, FIRST_FILE)).size, lastStart, "torn bytes truncated");
    // The store appends where the tail was cut, and the result reads back.
    await store.commit("after", [{ topic: "t", partition: 0, offset: cut }]);
    await store.close();
    const reopened = await OffsetStore.open(caseDir);
    assert.equal(reopened.fetch("after", "t", 0)?.offset, cut);
    assert.equal(reopened.fetch("g", "t", 0)?.offset, 100);
    await reopened.close();
  }
});

test("an empty file, a file of zeros and pure garbage open as an empty store", async () => {
  using dir = tempDir();
  const random = mulberry32(7);
  const garbage = Uint8Array.from({ length: 3000 }, () => Math.floor(random() * 256));
  const files = [new Uint8Array(0), new Uint8Array(5000), garbage];
  for (const [i, bytes] of files.entries()) {
    const store = await OffsetStore.open(storeDirWith(dir.path, `case-${i}`, bytes));
    assert.deepEqual(store.groups(), []);
    assert.equal(store.stats.logBytes, 0);
    await store.close();
  }
});

test("a damaged frame followed by valid frames fails open with CORRUPT_BATCH", async () => {
  using dir = tempDir();
  const { bytes, ends } = await framedFile(join(dir.path, "source"), 4);
  const damaged = Buffer.from(bytes);
  const position = ends[0]! + 20;
  damaged[position]! ^= 0x10;
  const caseDir = storeDirWith(dir.path, "damaged", damaged);
  await assert.rejects(OffsetStore.open(caseDir), (error: unknown) => {
    assert.ok(isSluiceError(error, "CORRUPT_BATCH"), String(error));
    assert.equal(error.details["position"], ends[0]);
    assert.equal(error.details["bytes"], ends[1]! - ends[0]!);
    assert.match(error.message, new RegExp(`bytes ${ends[0]} to ${ends[1]} are not valid frames`));
    assert.match(error.message, /onCorruption/);
    return true;
  });
  // Refusing to open changed nothing on disk.
  assert.deepEqual(readFileSync(join(caseDir, FIRST_FILE)), damaged);
});

test(
  "a flipped bit anywhere is cut as a torn tail or reported, later frames kept",
  SLOW,
  async () => {
    using dir = tempDir();
    const frames = 4;
    const { bytes, ends, dumps } = await framedFile(join(dir.path, "source"), frames);
    const starts = [0, ...ends.slice(0, -1)];
    for (let position = 0; position < bytes.length; position++) {
      const frame = starts.findLastIndex((start) => start <= position);
      const damaged = Buffer.from(bytes);
      damaged[position]! ^= 1 << (position % 8);
      const expected = dumps.at(-1)!.filter((line) => {
        const partition = Number(/^g\/t\/(\d+)=/.exec(line)![1]);
        return Math.floor(partition / 2) !== frame;
      });
      const caseDir = storeDirWith(dir.path, `flip-${position}`, damaged);
      const reports: SluiceError[] = [];
      const store = await OffsetStore.open(caseDir, { onCorruption: (e) => reports.push(e) });
      assert.deepEqual(dump(store), expected, `bit flipped at ${position}, in frame ${frame}`);
      if (frame === frames - 1) {
        // Damage in the last frame cannot be told from a torn write: it is cut, not reported.
        assert.equal(reports.length, 0);
      } else {
        assert.equal(reports.length, 1);
        assert.equal(reports[0]!.code, "CORRUPT_BATCH");
        assert.equal(reports[0]!.details["position"], starts[frame]);
        // The damaged file is kept beside a clean generation that the next open reads quietly.
        assert.ok(readdirSync(caseDir).some((name) => name.endsWith(".log.corrupt")));
        assert.equal(store.stats.generation, 1);
      }
      await store.commit("g", [{ topic: "t", partition: 99, offset: position }]);
      await store.close();
      const reopened = await OffsetStore.open(caseDir);
      assert.equal(reopened.fetch("g", "t", 99)?.offset, position);
      assert.equal(dump(reopened).length, expected.length + 1);
      await reopened.close();
    }
  },
);

test(
  "open never crashes on garbage among valid frames and keeps every valid frame",
  SLOW,
  async () => {
    using dir = tempDir();
    const { bytes, ends, dumps } = await framedFile(join(dir.path, "source"), 5);
    const starts = [0, ...ends.slice(0, -1)];
    const frames = starts.map((start, f) => bytes.subarray(start, ends[f]));
    const linesOf = (f: number) => dumps[f]!.filter((line) => !dumps[f - 1]?.includes(line));
    const piece = fc.oneof(
      fc.nat({ max: frames.length - 1 }).map((f) => ({ frame: f, bytes: frames[f]! })),
      fc.uint8Array({ minLength: 1, maxLength: 80 }).map((b) => ({ frame: -1, bytes: b })),
    );
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(piece, { maxLength: 8 }), fc.boolean(), async (pieces, report) => {
        const file = Buffer.concat(pieces.map((p) => p.bytes));
        const caseDir = storeDirWith(dir.path, `run-${run++}`, file);
        const options = report ? { onCorruption: () => {} } : {};
        let store: OffsetStore;
        try {
          store = await OffsetStore.open(caseDir, options);
        } catch (error) {
          // Without a callback, damage before a valid frame is the one error open may throw.
          assert.ok(!report && isSluiceError(error, "CORRUPT_BATCH"), String(error));
          return;
        }
        const expected = new Set(pieces.flatMap((p) => (p.frame < 0 ? [] : linesOf(p.frame))));
        assert.deepEqual(dump(store), [...expected].sort());
        await store.close();
      }),
      { numRuns: 150, seed: 42 },
    );
  },
);

/** Runs the committer child until it has acknowledged `target` commits, then SIGKILLs it. */
async function commitUntilKilled(dir: string, base: number, target: number): Promise<string[]> {
  const script = join(PROJECT_ROOT, "test", "engine", "offset_store_child.ts");
  const [command, args] = runtimeArgv(script, [dir, String(base)]);
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  let partial = "";
  let stderr = "";
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.on("exit", () => {
      exited = true;
      resolve();
    }),
  );
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    const parts = (partial + chunk).split("\n");
    partial = parts.pop()!;
    lines.push(...parts);
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  try {
    await waitFor(() => lines.length >= target || exited, `${target} acknowledged commits`, 30_000);
    assert.ok(!exited, `the committer exited on its own: ${stderr}`);
  } finally {
    child.kill("SIGKILL");
    await exit;
  }
  return lines;
}

test("every acknowledged commit survives a SIGKILL of the committing process", SLOW, async () => {
  using dir = tempDir();
  const random = mulberry32(2024);
  const acknowledged = new Map<string, number>();
  for (let cycle = 0; cycle < 10; cycle++) {
    const base = cycle * 1_000_000;
    const target = 1 + Math.floor(random() * 150);
    const lines = await commitUntilKilled(dir.path, base, target);
    for (const line of lines) {
      const [group, topic, partition, offset] = line.split(" ");
      acknowledged.set(`${group} ${topic} ${partition}`, Number(offset));
    }
    const store = await OffsetStore.open(dir.path);
    for (const [key, offset] of acknowledged) {
      const [group, topic, partition] = key.split(" ");
      const committed = store.fetch(group!, topic!, Number(partition));
      // Commits after the last line seen may have landed too: offsets only grow per key.
      assert.ok(committed !== undefined, `cycle ${cycle}: ${key} is present`);
      assert.ok(
        committed.offset >= offset,
        `cycle ${cycle}: ${key} ${committed.offset} ≥ ${offset}`,
      );
      assert.equal(committed.metadata, `m${committed.offset % 1_000_000}`);
    }
    await store.close();
  }
  assert.ok(acknowledged.size > 0);
});
