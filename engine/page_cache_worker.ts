// Bun's side of page_cache.ts: a worker thread that calls libc's posix_fadvise(DONTNEED)
// through bun:ffi, so a hint (0.3 ms at the median, up to 65 ms when it starts writeback of a
// range, strace on the broker) blocks this thread and not the event loop serving connections.
// Each message is { id, fd, position, length }; the answer is { id, result } with
// posix_fadvise's return value (0 or an errno).

import { dlopen } from "bun:ffi";

const POSIX_FADV_DONTNEED = 4;

const lib = dlopen("libc.so.6", {
  posix_fadvise: { args: ["i32", "i64", "i64", "i32"], returns: "i32" },
});

type Hint = { id: number; fd: number; position: number; length: number };

// The worker's global scope; typed by hand, since the project's types describe the main thread.
const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<Hint>) => void) | null;
};

scope.onmessage = (event) => {
  const { id, fd, position, length } = event.data;
  const result = lib.symbols.posix_fadvise(fd, position, length, POSIX_FADV_DONTNEED) as number;
  postMessage({ id, result });
};
