// A load worker process. Two ways in:
//
//   the coordinator spawns `<runtime> bench/worker/main.ts --listen 127.0.0.1:0 --once` with a
//   fresh token in SLUICE_BENCH_TOKEN, reads "worker listening on HOST:PORT" from its stdout,
//   connects, and the worker exits when that session ends;
//
//   `sluice bench worker --listen HOST:PORT --token T` (or SLUICE_BENCH_TOKEN) on another
//   machine serves coordinators one after the other (`sluice bench --workers host:port,...`).
//   It binds 127.0.0.1 unless HOST says otherwise, and it refuses to start without a token:
//   whoever holds the token can make it run any driver against any address.

import { parseHostPort, TMPDIR_ENV, TOKEN_ENV } from "./protocol.ts";
import { startWorkerServer } from "./server.ts";

export type WorkerCommandOptions = {
  /** HOST:PORT or PORT (then 127.0.0.1); default 127.0.0.1:0. */
  listen?: string;
  /** The shared token; default the SLUICE_BENCH_TOKEN environment variable. */
  token?: string;
  once?: boolean;
};

/** Starts a worker and waits until it stops; throws RangeError for a bad flag or no token. */
export async function runWorker(options: WorkerCommandOptions): Promise<void> {
  const token = options.token ?? process.env[TOKEN_ENV] ?? "";
  if (token.length === 0) {
    throw new RangeError(
      `a worker needs a token shared with the coordinator: --token T or ${TOKEN_ENV}`,
    );
  }
  const { host, port } = parseHostPort(options.listen ?? "127.0.0.1:0", "--listen");
  const tmpDir = process.env[TMPDIR_ENV];
  const server = await startWorkerServer({
    host,
    port,
    token,
    once: options.once ?? false,
    ...(tmpDir === undefined || tmpDir === "" ? {} : { tmpDir }),
  });
  console.log(`sluice bench worker listening on ${server.host}:${server.port}`);
  const stop = () => void server.stop();
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  await server.stopped;
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const listenAt = args.indexOf("--listen");
  try {
    await runWorker({
      ...(listenAt >= 0 ? { listen: args[listenAt + 1] ?? "" } : {}),
      once: args.includes("--once"),
    });
    // Driver clients may leave timers or sockets behind; the session is over.
    process.exit(0);
  } catch (error) {
    console.error(`sluice bench worker: ${(error as Error).message}`);
    process.exit(error instanceof RangeError ? 2 : 1);
  }
}
