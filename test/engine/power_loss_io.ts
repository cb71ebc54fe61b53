// A FileIO that simulates losing power. It performs every operation on the real files and
// remembers, per file, the bytes an fsync last made durable and the writes made since. At the
// crash point (the Nth operation) power goes out: that operation and every later one fail
// without touching the disk, and `powerLoss()` then rewrites each file as a disk could have
// kept it:
//
//   "synced-only"  every byte not covered by an fsync is gone (the file is its last durable
//                  image; a file never fsynced is empty);
//   "torn"         a random prefix of the unsynced writes survives, in order, and the last one
//                  kept is torn at a 512-byte sector boundary (drives write sectors, not files).
//
// What it does not model: directory entries. Creating, renaming and deleting files take effect
// at once and survive, as if every directory were fsynced; the engine fsyncs directories after
// such changes, so this loses little, and it keeps the model small.

import fs from "node:fs";
import { basename, dirname, join } from "node:path";
import { type FileIO, type MapRange, realFileIO } from "../../engine/io.ts";

export type PowerLossMode = "synced-only" | "torn";

const SECTOR_BYTES = 512;

type Change =
  | { kind: "write"; position: number; bytes: Uint8Array }
  | { kind: "truncate"; length: number };

type FileState = { durable: Uint8Array; changes: Change[] };

function powerLost(): Error {
  return Object.assign(new Error("EIO: power lost (simulated)"), { code: "EIO" });
}

function concat(buffers: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const buffer of buffers) length += buffer.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const buffer of buffers) {
    out.set(buffer, at);
    at += buffer.length;
  }
  return out;
}

function applyChange(image: Uint8Array, change: Change): Uint8Array {
  if (change.kind === "truncate") {
    const out = new Uint8Array(change.length);
    out.set(image.subarray(0, Math.min(image.length, change.length)));
    return out;
  }
  const end = change.position + change.bytes.length;
  const out = end > image.length ? new Uint8Array(end) : image.slice();
  if (end > image.length) out.set(image);
  out.set(change.bytes, change.position);
  return out;
}

export class PowerLossIO implements FileIO {
  /** Operations performed so far; the one numbered `crashAt` is the first that fails. */
  operations = 0;
  crashAt: number;
  #files = new Map<string, FileState>();

  constructor(crashAt = Number.POSITIVE_INFINITY) {
    this.crashAt = crashAt;
  }

  get crashed(): boolean {
    return this.operations >= this.crashAt;
  }

  #step(): void {
    if (this.operations >= this.crashAt) throw powerLost();
    this.operations++;
    if (this.operations >= this.crashAt) throw powerLost();
  }

  #state(given: string): FileState {
    const path = canonical(given);
    let state = this.#files.get(path);
    if (state === undefined) {
      // A file first seen now: what it holds already was durable before the test's writes.
      const bytes = fs.existsSync(path) ? new Uint8Array(fs.readFileSync(path)) : new Uint8Array(0);
      state = { durable: bytes, changes: [] };
      this.#files.set(path, state);
    }
    return state;
  }

  #synced(given: string): void {
    const path = canonical(given);
    const state = this.#state(path);
    state.durable = new Uint8Array(fs.readFileSync(path));
    state.changes = [];
  }

  async writeAll(fd: number, buffers: Uint8Array[], position: number): Promise<void> {
    this.#step();
    const path = pathOf(fd);
    this.#state(path).changes.push({ kind: "write", position, bytes: concat(buffers) });
    return realFileIO.writeAll(fd, buffers, position);
  }

  // fsyncs are simulated (the durable image is taken here), not made: the machine never
  // loses power for real in this test, and real fsyncs would make thousands of crash points slow.
  async datasync(fd: number): Promise<void> {
    this.#step();
    this.#synced(pathOf(fd));
  }

  readAt(fd: number, position: number, length: number): Uint8Array {
    return realFileIO.readAt(fd, position, length);
  }

  truncate(fd: number, length: number): void {
    this.#step();
    this.#state(pathOf(fd)).changes.push({ kind: "truncate", length });
    realFileIO.truncate(fd, length);
  }

  mapFile(path: string, range?: MapRange): Uint8Array | undefined {
    return realFileIO.mapFile(path, range);
  }

  writeFile(path: string, bytes: Uint8Array | string): void {
    this.#step();
    const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes.slice();
    const state = this.#state(path);
    state.changes.push(
      { kind: "truncate", length: 0 },
      { kind: "write", position: 0, bytes: data },
    );
    realFileIO.writeFile(path, bytes);
  }

  async writeFileAt(path: string, bytes: Uint8Array, position: number): Promise<void> {
    this.#step();
    this.#state(path).changes.push({ kind: "write", position, bytes: bytes.slice() });
    return realFileIO.writeFileAt(path, bytes, position);
  }

  async syncFile(path: string): Promise<void> {
    this.#step();
    this.#synced(path);
  }

  syncDirectory(_path: string): void {
    this.#step();
  }

  writeFileAtomic(
    dir: string,
    name: string,
    bytes: Uint8Array | string,
    options?: { sync?: boolean },
  ): void {
    this.#step();
    const state = this.#state(`${dir}/${name}`);
    const temp = `${dir}/.atomic-power-loss.tmp`;
    fs.writeFileSync(temp, bytes);
    fs.renameSync(temp, `${dir}/${name}`);
    if (options?.sync === false) {
      // Not fsynced: the new contents are as durable as any unsynced write.
      const written = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
      state.changes.push({ kind: "truncate", length: 0 });
      state.changes.push({ kind: "write", position: 0, bytes: written });
      return;
    }
    // The real one fsyncs the temp file before the rename and the directory after: durable whole.
    this.#synced(`${dir}/${name}`);
  }

  /**
   * Rewrites every file this FileIO wrote as power loss could have left it. Call it only once
   * the crash point has passed, so nothing writes any more. `random` picks the torn prefix.
   */
  powerLoss(mode: PowerLossMode, random: () => number): void {
    for (const [path, state] of this.#files) {
      if (!fs.existsSync(path)) continue; // deleted since: the deletion is what survived
      let image = state.durable;
      if (mode === "torn" && state.changes.length > 0) {
        const kept = Math.floor(random() * (state.changes.length + 1));
        for (let i = 0; i < kept; i++) {
          let change = state.changes[i]!;
          if (i === kept - 1 && change.kind === "write" && change.bytes.length > SECTOR_BYTES) {
            const sectors = Math.ceil(change.bytes.length / SECTOR_BYTES);
            const keep = Math.floor(random() * sectors) * SECTOR_BYTES;
            change = { ...change, bytes: change.bytes.subarray(0, keep) };
          }
          image = applyChange(image, change);
        }
      }
      fs.writeFileSync(path, image);
    }
  }
}

/** The path of an open file descriptor (Linux: /proc/self/fd). */
function pathOf(fd: number): string {
  return fs.readlinkSync(`/proc/self/fd/${fd}`);
}

/** One key per file however it was named: the real path of its directory, and its name. */
function canonical(path: string): string {
  return join(fs.realpathSync(dirname(path)), basename(path));
}
