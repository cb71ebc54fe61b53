// Power loss in the delay path (engine/queue_delay.ts): a tier entry may reach the disk while
// the store record it points at does not (an add whose store fdatasync had not run, its entry
// written back by the OS). After the restart the store ends below that entry; the next record
// stored takes its offset. The old entry must not deliver the new record at its own, earlier,
// time, and a saved intake must never pass store records that are not on disk.
// Virtual clock; a FileIO whose store fdatasyncs are held back (a slow disk).

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { DelayTiers, decodeRecordBatches, realFileIO } from "../../engine/mod.ts";
import { tempDir } from "../helpers.ts";
import { Clock, crashImage } from "./queue_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function record(value: string) {
  return { key: null, value: encoder.encode(value), headers: [], timestamp: 0 };
}

/** The values in the due log, in order. */
function dueValues(delays: DelayTiers): string[] {
  const out: string[] = [];
  let offset = delays.due.logStartOffset;
  while (offset < delays.due.highWatermark) {
    const read = delays.due.read(offset, 1024 * 1024);
    for (const view of read.views) {
      for (const batch of decodeRecordBatches(view)) {
        for (const r of batch.records) out.push(decoder.decode(r.value ?? new Uint8Array()));
      }
    }
    offset = read.nextOffset;
  }
  return out;
}

async function runTo(clock: Clock, delays: DelayTiers, untilMs: number): Promise<void> {
  while (clock.nowMs < untilMs) {
    clock.advance(1);
    while ((await delays.moveDue()) > 0) {}
  }
}

function pathOf(fd: number): string {
  return fs.readlinkSync(`/proc/self/fd/${fd}`);
}

/**
 * realFileIO whose fdatasyncs of store files wait for `release()`; `held` resolves at the first
 * such call. `storeSynced` is true once a store fdatasync has completed; `tierSynced` resolves
 * once a tier (ref-*) fdatasync has completed.
 */
function slowStoreIO() {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let onHeld!: () => void;
  const held = new Promise<void>((resolve) => (onHeld = resolve));
  let onTierSynced!: () => void;
  const tierSynced = new Promise<void>((resolve) => (onTierSynced = resolve));
  const state = {
    storeSynced: false,
    positionsWrites: [] as { intake: unknown; synced: boolean }[],
  };
  const note = (name: string, text: string | Uint8Array) => {
    if (name !== "positions.json") return;
    const json = typeof text === "string" ? text : decoder.decode(text);
    const { intake } = JSON.parse(json) as { intake: unknown };
    state.positionsWrites.push({ intake, synced: state.storeSynced });
  };
  const io = {
    ...realFileIO,
    datasync: async (fd: number) => {
      const path = pathOf(fd);
      if (path.includes("/store-")) {
        onHeld();
        await gate;
        await realFileIO.datasync(fd);
        state.storeSynced = true;
        return;
      }
      await realFileIO.datasync(fd);
      if (path.includes("/ref-")) onTierSynced();
    },
    writeFileAtomic: (...args: Parameters<typeof realFileIO.writeFileAtomic>) => {
      note(args[1], args[2]);
      return realFileIO.writeFileAtomic(...args);
    },
    writeFileAtomicAsync: (dir: string, name: string, bytes: Uint8Array | string) => {
      note(name, bytes);
      return realFileIO.writeFileAtomicAsync!(dir, name, bytes);
    },
  };
  return { io, state, held, tierSynced, release };
}

function truncateLogs(dir: string): void {
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".log"))) {
    fs.truncateSync(join(dir, file), 0);
  }
}

describe("delay path under power loss", () => {
  test("a positions save syncs the stores before its intake passes their records", async () => {
    using dir = tempDir();
    const clock = new Clock();
    const warnings: string[] = [];
    const slow = slowStoreIO();
    const host = { io: slow.io, now: clock.now, warn: (m: string) => warnings.push(m) };
    const delays = await DelayTiers.open(dir.path, { ...host, fsync: true });
    try {
      // Tier 6, store 1: the record and its entry are written; the store's fdatasync is held.
      const adding = delays.add([{ record: record("a"), dueMs: clock.nowMs + 100, deliveries: 1 }]);
      await slow.held;
      const saving = delays.persistPositions();
      // The save has synced the tier; whatever it writes next is written within this turn.
      await slow.tierSynced;
      await new Promise<void>((resolve) => setImmediate(resolve));
      slow.release();
      await Promise.all([adding, saving]);
      const past = slow.state.positionsWrites.filter((w) => (w.intake as number[])[1] === 1);
      assert.ok(past.length > 0, JSON.stringify(slow.state.positionsWrites));
      for (const write of past) assert.ok(write.synced, "intake 1 written before store 1 synced");
    } finally {
      await delays.close();
    }
  });

  test("an entry whose store record was lost delivers no later record early", async () => {
    using dir = tempDir();
    using image = tempDir();
    const clock = new Clock();
    const start = clock.nowMs;
    const warnings: string[] = [];
    const slow = slowStoreIO();
    const warn = (m: string) => warnings.push(m);
    const delays = await DelayTiers.open(dir.path, {
      io: slow.io,
      now: clock.now,
      warn,
      fsync: true,
    });
    const adding = delays.add([{ record: record("lost"), dueMs: start + 100, deliveries: 1 }]);
    await slow.held;
    // Power goes out: the entry in tier 6 was written back, its store record was not.
    crashImage(dir.path, image.path);
    truncateLogs(join(image.path, "delay", "store-01"));
    slow.release();
    await adding;
    await delays.close();

    const reopened = await DelayTiers.open(image.path, {
      io: realFileIO,
      now: clock.now,
      warn,
      fsync: true,
    });
    try {
      // Confirmed after the restart: store 1 offset 0 again, due at +250 (tier 7).
      await reopened.add([{ record: record("confirmed"), dueMs: start + 250, deliveries: 1 }]);
      await runTo(clock, reopened, start + 249);
      assert.deepEqual(dueValues(reopened), [], "nothing is due before +250");
      await runTo(clock, reopened, start + 300);
      assert.deepEqual(dueValues(reopened), ["confirmed"], "delivered once, when due");
      assert.ok(
        warnings.some((w) => w.includes("past the store's end 0 at open")),
        warnings.join("\n"),
      );
      await reopened.persistPositions();
      assert.equal(reopened.storeReferences(1), 0, "the lost entry holds no store segment");
    } finally {
      await reopened.close();
    }
  });

  test("a saved intake past its store's end is clamped and saved at open", async () => {
    using dir = tempDir();
    using image = tempDir();
    const clock = new Clock();
    const start = clock.nowMs;
    const warnings: string[] = [];
    const host = { io: realFileIO, now: clock.now, warn: (m: string) => warnings.push(m) };
    const first = await DelayTiers.open(dir.path, { ...host, fsync: true });
    await first.add([{ record: record("kept"), dueMs: start + 20, deliveries: 1 }]);
    await first.close();
    // A store that lost a record its saved intake had passed (written by an earlier version).
    const positionsPath = join(dir.path, "delay", "positions.json");
    const saved = JSON.parse(fs.readFileSync(positionsPath, "utf8")) as { intake: number[] };
    assert.equal(saved.intake[1], 1);
    saved.intake[1] = 2;
    fs.writeFileSync(positionsPath, `${JSON.stringify(saved)}\n`);

    const reopened = await DelayTiers.open(dir.path, { ...host, fsync: true });
    try {
      const now = JSON.parse(fs.readFileSync(positionsPath, "utf8")) as { intake: number[] };
      assert.equal(now.intake[1], 1, "the intake is the store's end, on disk before any add");
      // Confirmed at store 1 offset 1; its entry (tier 7) is lost in the crash below.
      await reopened.add([{ record: record("new"), dueMs: start + 200, deliveries: 1 }]);
      crashImage(dir.path, image.path);
    } finally {
      await reopened.close();
    }
    truncateLogs(join(image.path, "delay", "ref-07"));
    const after = await DelayTiers.open(image.path, { ...host, fsync: true });
    try {
      await runTo(clock, after, start + 200);
      assert.deepEqual(dueValues(after).sort(), ["kept", "new"], "the new record got its entry");
    } finally {
      await after.close();
    }
  });
});
