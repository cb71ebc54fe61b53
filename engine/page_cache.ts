// Drop-behind: asking the kernel to drop the cached pages of log data that is durable and
// older than a partition's recent tail (posix_fadvise POSIX_FADV_DONTNEED), so that a log
// written at a steady rate keeps a page-cache footprint of about its tail and writes into
// pages the kernel has just freed, instead of growing the cache into memory it has not used.
//
// Why: on VMs whose balloon reports free memory to the host (virtio-balloon free page
// reporting, as on the machine sluice is benchmarked on), a page the guest had not touched
// since it was reported costs a host fault on its first write. A buffered write stream that
// keeps growing the page cache pays it on every new page: with 16 files written in 64 KiB
// pieces and fdatasynced every MiB, the kernel's copy into the page cache cost ~0.5 ms/MB of
// system time for the first ~5 GB and 3-5 ms/MB after, and the write rate fell from 200-540
// to 50-150 MB/s (loaded); dropping each file's synced range older than its last 8 MiB kept
// it at ~0.5 ms/MB and 200-490 MB/s over 10 GB. The broker showed the same: at 100,000 msg/s
// acks=all, the copy (copy_folio_from_iter_atomic) was 6-8% of its CPU 15 s into a run and
// 36-38% 30 s later, ~8x more per byte (perf, two runs, loaded).
//
// By default only durable (fsynced) ranges are dropped: their pages are clean, so the hint
// frees them at once and starts no writeback. A log that does not sync may drop too
// (EngineOptions.dropBehindUnsynced): on dirty pages the same hint starts their writeback
// without waiting and drops only what is clean, so each range gets it twice, half a keep
// apart (partition_log.ts); 16 files written without syncs so ran 2.2-3.5x faster at 0.2-0.4x
// the system time per MB (alternated, loaded; bench/RESULTS.md). It is a hint: where
// posix_fadvise cannot be reached (another OS, no FFI) nothing is dropped and everything else
// works as before; where it returns an errno, the log that asked stops dropping and warns
// once (partition_log.ts).
//
// The hint runs off the event loop: a DONTNEED that starts writeback of a range took 0.3 ms at
// the median but 3.9 ms at p99 and up to 65 ms on the broker's main thread (strace, 1,232 calls
// in 8 s of `bench:tcp --drop-behind all`), and every connection waited on it. Deno calls it on
// its FFI thread (`nonblocking`), Bun in a worker thread (page_cache_worker.ts), as syncfs.ts
// does with its flush. A log keeps one batch of hints in flight at a time (partition_log.ts).

/**
 * Drops the cached pages of `length` bytes at `position` of the open file `fd`; answers 0, or
 * the errno posix_fadvise returned (it reports failure so, not through errno or a throw). The
 * process's own dropper answers through a promise (the call runs on another thread, and `fd`
 * must stay open until it settles); one given to a log may also answer at once.
 */
export type CacheDropper = (
  fd: number,
  position: number,
  length: number,
) => number | Promise<number>;

const LIBC = "libc.so.6";
const POSIX_FADV_DONTNEED = 4;

type DenoFfi = {
  permissions: { querySync: (descriptor: { name: "ffi" }) => { state: string } };
  dlopen: (
    path: string,
    symbols: Record<string, { parameters: string[]; result: string; nonblocking: boolean }>,
  ) => {
    symbols: { posix_fadvise: (fd: number, a: bigint, b: bigint, c: number) => Promise<number> };
  };
};

/** Whether Deno may load libraries (--allow-ffi): asked without a prompt. */
export function denoFfiGranted(deno: {
  permissions: { querySync: (descriptor: { name: "ffi" }) => { state: string } };
}): boolean {
  return deno.permissions.querySync({ name: "ffi" }).state === "granted";
}

type Pending = (result: number) => void;

/**
 * Bun: posix_fadvise in a worker thread, started on first use. The worker answers in order;
 * an answer is told to the promise made for its id. A worker that fails answers every hint in
 * flight, and every later one, with EIO, so each log that asked stops dropping and says so.
 */
function bunWorkerDropper(): CacheDropper {
  const EIO = 5;
  let worker: Worker | undefined;
  let failed = false;
  const pending = new Map<number, Pending>();
  let nextId = 0;
  const start = (): Worker => {
    const started = new Worker(new URL("./page_cache_worker.ts", import.meta.url).href);
    // A hint in flight keeps its log waiting, not the process alive.
    (started as { unref?: () => void }).unref?.();
    started.onmessage = (event: MessageEvent<{ id: number; result: number }>) => {
      const tell = pending.get(event.data.id);
      if (tell === undefined) return;
      pending.delete(event.data.id);
      tell(event.data.result);
    };
    started.onerror = () => {
      failed = true;
      for (const tell of pending.values()) tell(EIO);
      pending.clear();
    };
    return started;
  };
  return (fd, position, length) => {
    if (failed) return EIO;
    worker ??= start();
    const id = nextId++;
    const answer = new Promise<number>((resolve) => pending.set(id, resolve));
    worker.postMessage({ id, fd, position, length });
    return answer;
  };
}

/** posix_fadvise through libc, off the event loop, or undefined where it cannot be reached. */
async function loadDropper(): Promise<CacheDropper | undefined> {
  if (process.platform !== "linux") return undefined;
  try {
    const deno = (globalThis as { Deno?: DenoFfi }).Deno;
    if (deno?.dlopen !== undefined) {
      // Asked first: without --allow-ffi, dlopen would prompt on a terminal.
      if (!denoFfiGranted(deno)) return undefined;
      const lib = deno.dlopen(LIBC, {
        posix_fadvise: {
          parameters: ["i32", "i64", "i64", "i32"],
          result: "i32",
          nonblocking: true,
        },
      });
      return (fd, position, length) =>
        lib.symbols.posix_fadvise(fd, BigInt(position), BigInt(length), POSIX_FADV_DONTNEED);
    }
    if ((globalThis as { Bun?: unknown }).Bun === undefined) return undefined;
    // Loaded here first, so a runtime without bun:ffi drops nothing rather than failing each
    // hint in the worker.
    await import("bun:ffi" as string);
    return bunWorkerDropper();
  } catch {
    // No FFI (Deno without --allow-ffi, a runtime without it): nothing is dropped.
    return undefined;
  }
}

/** Loaded once per process, on first use. */
let dropper: Promise<CacheDropper | undefined> | undefined;

/** The process's page-cache dropper, or undefined where none can be reached. */
export function cacheDropper(): Promise<CacheDropper | undefined> {
  dropper ??= loadDropper();
  return dropper;
}

/**
 * Each partition keeps this many bytes of its latest durable data cached (consumers at or
 * near the tail read them, besides the segment's in-memory tail of up to 8 MiB): at 6 MB/s per
 * partition (100,000 msg/s of 1 KiB over 16 partitions) about 1.3 seconds. It was 64 MiB; on a
 * VM whose free memory goes back to the host every page the cache grows by costs a host fault
 * on its first write, and 64 MiB over 16 partitions is 1 GiB of those before any page is
 * reused: at a fixed 100,000 accepted msg/s on queue-1kb the first ~10 s of a run took the
 * whole machine (the kernel's copy into fresh page-cache pages 12-18 % of all its samples)
 * and left a backlog of 170,000-330,000 records, where with 8 MiB the copy took 5-6 % and the
 * backlog peaked at 350-82,000 (bench/RESULTS.md, "Drop-behind keep of 8 MiB").
 */
export const DROP_BEHIND_KEEP_BYTES_DEFAULT = 8 * 1024 * 1024;
/** Ranges are dropped once this many bytes have gathered: one call per 4 MiB, not per round. */
export const DROP_BEHIND_STEP_BYTES = 4 * 1024 * 1024;
