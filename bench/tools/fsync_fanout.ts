// What fdatasync costs when many files need it at once: the disk-side question behind a group
// commit across partitions. For each file count N, every round writes a small record (1 KiB by
// default) at the end of each of N files, then makes all N durable, in one of these ways:
//
//   serial     one fdatasync after another (a log flushing its partitions one by one)
//   k=K        fdatasyncs with at most K in flight on the runtime's thread pool
//   all        every file's fdatasync in flight at once
//   syncfs     one syncfs(2) of the file system through FFI (bun:ffi or Deno.dlopen on libc),
//              for comparison only: it flushes every dirty page of the file system, not N files
//   all-prewritten  as `all`, but into files whose blocks were written (zeros) and fsynced
//              beforehand: the fdatasyncs then change no file size and allocate nothing, so
//              they need no journal commit, only the data and a device cache flush. What a
//              log with pre-written segments would pay (sluice's segments are not pre-written)
//
// It prints µs per round (mean and p99) and per file for each (mode, N), and one JSON object as
// the last line.
// On ext4, concurrent fdatasyncs of different files can share one journal commit, which is
// what makes syncing many partitions in one round cheaper per file than one by one.
//
//   bun bench/tools/fsync_fanout.ts [--files 16,100,1000] [--in-flight 4,16,64]
//       [--rounds 20] [--record-bytes 1024] [--dir DIR]
//   deno run -A bench/tools/fsync_fanout.ts ...

import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    files: { type: "string", default: "16,100,1000" },
    "in-flight": { type: "string", default: "4,16,64" },
    rounds: { type: "string", default: "20" },
    "record-bytes": { type: "string", default: "1024" },
    dir: { type: "string" },
  },
});

function positiveList(name: string, text: string): number[] {
  const list = text.split(",").map(Number);
  for (const value of list) {
    if (!Number.isSafeInteger(value) || value < 1) {
      console.error(`--${name} ${text}: each value must be a positive integer`);
      process.exit(2);
    }
  }
  return list;
}

const fileCounts = positiveList("files", values.files!);
const inFlights = positiveList("in-flight", values["in-flight"]!);
const [rounds] = positiveList("rounds", values.rounds!);
const [recordBytes] = positiveList("record-bytes", values["record-bytes"]!);

/** syncfs(fd) through the runtime's FFI, or undefined with the reason it is not reachable. */
async function loadSyncfs(): Promise<{ call?: (fd: number) => number; reason?: string }> {
  const libc = "libc.so.6";
  const deno = (globalThis as { Deno?: { dlopen?: unknown } }).Deno;
  try {
    if (typeof (globalThis as { Bun?: unknown }).Bun !== "undefined") {
      const ffi = await import("bun:ffi");
      const lib = ffi.dlopen(libc, { syncfs: { args: ["i32"], returns: "i32" } });
      return { call: (fd) => lib.symbols.syncfs(fd) as number };
    }
    if (deno?.dlopen !== undefined) {
      type Dlopen = (
        path: string,
        symbols: Record<string, { parameters: string[]; result: string }>,
      ) => { symbols: { syncfs: (fd: number) => number } };
      const lib = (deno.dlopen as Dlopen)(libc, { syncfs: { parameters: ["i32"], result: "i32" } });
      return { call: (fd) => lib.symbols.syncfs(fd) };
    }
    return { reason: "this runtime has no FFI" };
  } catch (error) {
    return { reason: String(error) };
  }
}

function datasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.fdatasync(fd, (error) => (error === null ? resolve() : reject(error)));
  });
}

/** Runs `task` over every fd with at most `inFlight` running at once. */
async function bounded(fds: number[], inFlight: number): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < fds.length) await datasync(fds[next++]!);
  };
  const lanes: Promise<void>[] = [];
  for (let i = 0; i < Math.min(inFlight, fds.length); i++) lanes.push(lane());
  await Promise.all(lanes);
}

type Row = {
  mode: string;
  files: number;
  usPerRound: number;
  usPerRoundP99: number;
  usPerFile: number;
};

async function measure(
  fds: number[],
  positions: number[],
  mode: string,
  sync: () => Promise<void>,
): Promise<Row> {
  const record = new Uint8Array(recordBytes!).fill(0x61);
  const roundsMs: number[] = [];
  // One round unmeasured, so that each file's first allocation is not in the figure.
  for (let round = -1; round < rounds!; round++) {
    for (let i = 0; i < fds.length; i++) {
      fs.writeSync(fds[i]!, record, 0, record.length, positions[i]!);
      positions[i]! += record.length;
    }
    const startMs = performance.now();
    await sync();
    if (round >= 0) roundsMs.push(performance.now() - startMs);
  }
  const usPerRound = (roundsMs.reduce((sum, ms) => sum + ms, 0) * 1000) / rounds!;
  roundsMs.sort((a, b) => a - b);
  const p99Ms = roundsMs[Math.min(roundsMs.length - 1, Math.floor(roundsMs.length * 0.99))]!;
  const usPerRoundP99 = p99Ms * 1000;
  return { mode, files: fds.length, usPerRound, usPerRoundP99, usPerFile: usPerRound / fds.length };
}

/** Files whose first `bytes` are written (zeros) and fsynced: later writes there allocate none. */
function prewrittenFiles(count: number, bytes: number): number[] {
  const zeros = new Uint8Array(bytes);
  const fds: number[] = [];
  for (let i = 0; i < count; i++) {
    const fd = fs.openSync(join(dir, `pre${i}-${count}.log`), "w+");
    fs.writeSync(fd, zeros, 0, bytes, 0);
    fs.fsyncSync(fd);
    fds.push(fd);
  }
  return fds;
}

const dir = fs.mkdtempSync(join(values.dir ?? os.tmpdir(), "sluice-fsync-fanout-"));
const syncfs = await loadSyncfs();
const rows: Row[] = [];
try {
  for (const count of fileCounts) {
    const fds: number[] = [];
    for (let i = 0; i < count; i++) fds.push(fs.openSync(join(dir, `f${i}-${count}.log`), "w+"));
    const positions = fds.map(() => 0);
    try {
      rows.push(await measure(fds, positions, "serial", () => bounded(fds, 1)));
      for (const k of inFlights) {
        if (k >= count) continue;
        rows.push(await measure(fds, positions, `k=${k}`, () => bounded(fds, k)));
      }
      rows.push(await measure(fds, positions, "all", () => bounded(fds, count)));
      const pre = prewrittenFiles(count, (rounds! + 1) * recordBytes!);
      try {
        const prePositions = pre.map(() => 0);
        rows.push(await measure(pre, prePositions, "all-prewritten", () => bounded(pre, count)));
      } finally {
        for (const fd of pre) fs.closeSync(fd);
      }
      const call = syncfs.call;
      if (call !== undefined) {
        const check = async () => {
          if (call(fds[0]!) !== 0) throw new Error("syncfs returned -1");
        };
        rows.push(await measure(fds, positions, "syncfs", check));
      }
    } finally {
      for (const fd of fds) fs.closeSync(fd);
    }
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}

console.log(`fsync fan-out in ${dir} (${recordBytes} B per file per round, ${rounds} rounds)`);
console.log("mode            files   µs/round  p99 µs/round    µs/file");
for (const row of rows) {
  const round = row.usPerRound.toFixed(0).padStart(10);
  const p99 = row.usPerRoundP99.toFixed(0).padStart(13);
  const file = row.usPerFile.toFixed(1).padStart(10);
  console.log(`${row.mode.padEnd(14)} ${String(row.files).padStart(6)} ${round} ${p99} ${file}`);
}
if (syncfs.call === undefined) console.log(`syncfs not measured: ${syncfs.reason}`);
console.log(JSON.stringify({ rows, syncfs: syncfs.call === undefined ? syncfs.reason : "ffi" }));
