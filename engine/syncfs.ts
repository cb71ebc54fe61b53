// One syncfs(2) of the file system that holds the data directory: it writes back every dirty
// page of that file system and flushes the device's cache, so every byte written to any
// partition before the call is on stable storage when it returns. Measured with
// bench/tools/fsync_fanout.ts on the ext4 disk sluice is benchmarked on (loaded): after a
// 1 KiB write to each of 1,000 files, one syncfs took ~12 ms where 1,000 fdatasyncs took
// 160-400 ms however many were in flight (concurrent fdatasyncs barely shared the journal's
// commits). That is what lets a group commit across partitions cost one flush per round.
//
// Reached through FFI on libc, without blocking the event loop: Deno calls it on its FFI
// thread (`nonblocking: true`, which needs --allow-ffi), Bun in a worker thread
// (syncfs_worker.ts, bun:ffi). Only on Linux 5.8 and later, where syncfs reports a writeback
// error of the file system to each descriptor that has not yet seen it; earlier kernels return
// 0 after a failed writeback, which would acknowledge data that is not on disk. Anywhere else
// (another OS, an older kernel, no FFI, no permission) `openSyncfs` returns undefined and the
// group commit fdatasyncs each log instead.

import fs from "node:fs";
import os from "node:os";
import { denoFfiGranted } from "./page_cache.ts";

export interface FileSystemSync {
  /** The device (st_dev) the flush covers: logs on another file system are fdatasynced. */
  readonly dev: number;
  /** Flushes the whole file system; rejects if the kernel reports a writeback error. */
  sync(): Promise<void>;
  close(): void;
}

const LIBC = "libc.so.6";

/** syncfs reports writeback errors from Linux 5.8 on (errseq_t per super block). */
function kernelReportsErrors(): boolean {
  if (process.platform !== "linux") return false;
  let release: string;
  try {
    release = os.release();
  } catch {
    // Deno without --allow-sys: the kernel cannot be asked, so the engine fdatasyncs.
    return false;
  }
  const match = /^(\d+)\.(\d+)/.exec(release);
  if (match === null) return false;
  const major = Number(match[1]);
  const minor = Number(match[2]);
  return major > 5 || (major === 5 && minor >= 8);
}

type DenoFfi = {
  permissions: { querySync: (descriptor: { name: "ffi" }) => { state: string } };
  dlopen: (
    path: string,
    symbols: Record<string, { parameters: string[]; result: string; nonblocking: boolean }>,
  ) => { symbols: { syncfs: (fd: number) => Promise<number> }; close: () => void };
};

function failed(dir: string): Error {
  return Object.assign(new Error(`syncfs of the file system of ${dir} failed`), { code: "EIO" });
}

function denoSyncfs(dir: string, fd: number, dev: number): FileSystemSync | undefined {
  const deno = (globalThis as { Deno?: DenoFfi }).Deno;
  // Asked first: without --allow-ffi, dlopen would prompt on a terminal.
  if (deno?.dlopen === undefined || !denoFfiGranted(deno)) return undefined;
  const lib = deno.dlopen(LIBC, {
    syncfs: { parameters: ["i32"], result: "i32", nonblocking: true },
  });
  return {
    dev,
    async sync() {
      if ((await lib.symbols.syncfs(fd)) !== 0) throw failed(dir);
    },
    close() {
      lib.close();
      fs.closeSync(fd);
    },
  };
}

type Pending = { resolve: () => void; reject: (error: Error) => void };

function bunSyncfs(dir: string, fd: number, dev: number): FileSystemSync | undefined {
  if ((globalThis as { Bun?: unknown }).Bun === undefined) return undefined;
  // Started on the first flush, not at open: an engine that never fsyncs a round (fsync on an
  // interval, no acks=all) never pays for a thread.
  let worker: Worker | undefined;
  const pending = new Map<number, Pending>();
  let nextId = 0;
  const failAll = (error: Error) => {
    for (const call of pending.values()) call.reject(error);
    pending.clear();
  };
  const start = (): Worker => {
    const started = new Worker(new URL("./syncfs_worker.ts", import.meta.url).href);
    // A flush in flight keeps its caller waiting, not the process alive.
    (started as { unref?: () => void }).unref?.();
    started.onmessage = (event: MessageEvent<{ id: number; result: number }>) => {
      const call = pending.get(event.data.id);
      if (call === undefined) return;
      pending.delete(event.data.id);
      if (event.data.result === 0) call.resolve();
      else call.reject(failed(dir));
    };
    started.onerror = (event) => failAll(new Error(`the syncfs worker failed: ${event.message}`));
    return started;
  };
  return {
    dev,
    sync() {
      worker ??= start();
      const id = nextId++;
      const done = new Promise<void>((resolve, reject) => pending.set(id, { resolve, reject }));
      worker.postMessage({ id, fd });
      return done;
    },
    close() {
      failAll(new Error("the syncfs worker is closed"));
      worker?.terminate();
      fs.closeSync(fd);
    },
  };
}

/**
 * A syncfs of the file system holding `dir`, or undefined where none is safe or reachable. The
 * descriptor is opened here, so writeback errors from now on are reported to its calls.
 */
export function openSyncfs(dir: string): FileSystemSync | undefined {
  if (!kernelReportsErrors()) return undefined;
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, "r");
    const dev = fs.fstatSync(fd).dev;
    const sync = denoSyncfs(dir, fd, dev) ?? bunSyncfs(dir, fd, dev);
    if (sync === undefined) fs.closeSync(fd);
    return sync;
  } catch {
    // No FFI here (a Deno run without --allow-ffi, no libc): fdatasync per log instead.
    if (fd !== undefined) fs.closeSync(fd);
    return undefined;
  }
}
