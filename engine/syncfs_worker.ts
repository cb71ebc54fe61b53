// Bun's side of syncfs.ts: a worker thread that calls libc's syncfs(2) through bun:ffi, so the
// flush (milliseconds) blocks this thread and not the event loop serving connections. Each
// message is { id, fd }; the answer is { id, result } with syncfs's return value (0 or -1).

import { dlopen } from "bun:ffi";

const lib = dlopen("libc.so.6", { syncfs: { args: ["i32"], returns: "i32" } });

// The worker's global scope; typed by hand, since the project's types describe the main thread.
const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<{ id: number; fd: number }>) => void) | null;
};

scope.onmessage = (event) => {
  const result = lib.symbols.syncfs(event.data.fd) as number;
  postMessage({ id: event.data.id, result });
};
