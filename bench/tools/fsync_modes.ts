// What one fdatasync costs after a small write, by how the write meets the file, on this disk:
//
//   append      the write extends the file: ext4's fdatasync must also commit the journal
//               (the new size), so it waits for a jbd2 commit, shared with every other file's
//               metadata on the file system
//   overwrite   the write lands on blocks written and synced before (a file zero-filled ahead
//               of need): only the data and a cache flush
//   fallocated  the write lands in an fallocate'd (unwritten) extent: the extent's conversion
//               to written is metadata, so a journal commit again
//
// Each round runs every mode once, in turn (alternated), --writes writes of --bytes each, one
// fdatasync after each, in a file of its own under --dir. With --load, a worker appends 256
// KiB and fdatasyncs in a loop on another file meanwhile (as partition segments do under
// acks=all), so the journal is busy as it is on a loaded broker. Prints one JSON line: per mode
// p50/p99/max over all rounds, ms.
//
//   bun bench/tools/fsync_modes.ts [--writes 300] [--bytes 4096] [--rounds 2] [--load]
//       [--dir <data directory>]

import fs from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { isMainThread } from "node:worker_threads";

const LOAD_CHUNK_BYTES = 256 * 1024;
/** The load worker starts a new file past this, so that it never fills the disk. */
const LOAD_FILE_BYTES_MAX = 256 * 1024 * 1024;

if (!isMainThread) loadLoop();
else await main();

function loadLoop(): void {
  const scope = globalThis as unknown as { onmessage: ((event: MessageEvent) => void) | null };
  scope.onmessage = (event: MessageEvent) => {
    const path = String(event.data);
    const chunk = new Uint8Array(LOAD_CHUNK_BYTES).fill(1);
    const fd = fs.openSync(path, "w");
    let position = 0;
    const step = () => {
      if (position >= LOAD_FILE_BYTES_MAX) {
        fs.ftruncateSync(fd, 0);
        position = 0;
      }
      fs.writeSync(fd, chunk, 0, chunk.length, position);
      position += chunk.length;
      fs.fdatasync(fd, () => setImmediate(step));
    };
    step();
    void fd;
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      writes: { type: "string", default: "300" },
      bytes: { type: "string", default: "4096" },
      rounds: { type: "string", default: "2" },
      load: { type: "boolean", default: false },
      dir: { type: "string", default: join(process.cwd(), ".fsync-modes") },
    },
  });
  const writes = bounded("writes", values.writes, 10, 100_000);
  const bytes = bounded("bytes", values.bytes, 1, 1024 * 1024);
  const rounds = bounded("rounds", values.rounds, 1, 100);
  const dir = values.dir;
  fs.mkdirSync(dir, { recursive: true });
  let worker: Worker | undefined;
  if (values.load) {
    worker = new Worker(new URL(import.meta.url).href, { type: "module" });
    worker.postMessage(join(dir, "load"));
  }
  const modes = ["append", "overwrite", "fallocated"] as const;
  const times: Record<string, number[]> = { append: [], overwrite: [], fallocated: [] };
  try {
    for (let round = 0; round < rounds; round++) {
      for (const mode of modes) times[mode]!.push(...run(dir, mode, { writes, bytes }));
    }
  } finally {
    worker?.terminate();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const summary: Record<string, unknown> = { writes, bytes, rounds, load: values.load };
  for (const mode of modes) {
    const list = times[mode]!.sort((a, b) => a - b);
    const at = (p: number) => list[Math.min(list.length - 1, Math.floor(p * list.length))]!;
    summary[mode] = { p50: round3(at(0.5)), p99: round3(at(0.99)), max: round3(at(1)) };
  }
  console.log(JSON.stringify(summary));
}

function bounded(name: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(`--${name} ${text} is not an integer in [${min}, ${max}]`);
  }
  return value;
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}

/** fdatasync durations (ms) of `writes` writes in one mode, on a fresh file. */
function run(dir: string, mode: string, { writes, bytes }: { writes: number; bytes: number }) {
  const path = join(dir, mode);
  const fd = fs.openSync(path, "w+");
  const total = writes * bytes;
  if (mode === "overwrite") {
    fs.writeSync(fd, new Uint8Array(total));
    fs.fsyncSync(fd);
  } else if (mode === "fallocated") {
    const spawned = Bun.spawnSync(["fallocate", "-l", String(total), path]);
    if (spawned.exitCode !== 0) throw new Error(`fallocate failed: ${spawned.stderr.toString()}`);
    fs.fsyncSync(fd);
  }
  const block = new Uint8Array(bytes).fill(7);
  const durations: number[] = [];
  for (let i = 0; i < writes; i++) {
    fs.writeSync(fd, block, 0, bytes, i * bytes);
    const startMs = performance.now();
    fs.fdatasyncSync(fd);
    durations.push(performance.now() - startMs);
  }
  fs.closeSync(fd);
  fs.unlinkSync(path);
  return durations;
}
