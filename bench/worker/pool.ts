// Which load workers a run uses, from `--workers`: a count of local worker processes (spawned
// here under the same runtime, one per count), 0 for the load in the coordinator process, or a
// list of remote workers `host:port,...` started with `sluice bench worker` and sharing a token.

import os from "node:os";
import { type LoadWorker, RemoteWorker, spawnLocalWorker } from "./handle.ts";
import { parseHostPort, TOKEN_ENV } from "./protocol.ts";

/** The most local worker processes one run may spawn. */
export const LOCAL_WORKERS_MAX = 64;

/**
 * The default: 2 on a machine of up to 8 cores (one producing, one consuming worker), then a
 * worker per 4 cores, so the load generators are not what limits a broker on a bigger machine.
 */
export function defaultWorkerCount(cores = os.cpus().length): number {
  return Math.max(2, Math.floor(cores / 4));
}

export type WorkerSpec =
  | { kind: "in-process" }
  | { kind: "local"; count: number }
  | { kind: "remote"; addresses: { host: string; port: number }[]; token: string };

/** Reads `--workers` (and the token for remote workers); RangeError on a bad value. */
export function parseWorkers(value: string | number | undefined, token?: string): WorkerSpec {
  if (value === undefined) return { kind: "local", count: defaultWorkerCount() };
  const text = String(value).trim();
  if (/^\d+$/.test(text)) {
    const count = Number(text);
    if (count > LOCAL_WORKERS_MAX) {
      throw new RangeError(`--workers ${count} exceeds ${LOCAL_WORKERS_MAX} local workers`);
    }
    return count === 0 ? { kind: "in-process" } : { kind: "local", count };
  }
  const addresses = text
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part.length > 0)
    .map((part) => parseHostPort(part, "--workers entry"));
  if (addresses.length === 0) throw new RangeError(`--workers '${text}' names no worker`);
  const shared = token ?? process.env[TOKEN_ENV] ?? "";
  if (shared.length === 0) {
    throw new RangeError(`remote workers need their shared token: --token T or ${TOKEN_ENV}`);
  }
  return { kind: "remote", addresses, token: shared };
}

/**
 * Starts (local, their directories under `tmpDir`) or connects to (remote) the workers of
 * `spec`; at most `limit` of them. On a failure the ones already started are killed.
 */
export async function startWorkers(
  spec: WorkerSpec,
  limit: number,
  tmpDir: string,
): Promise<LoadWorker[]> {
  const workers: LoadWorker[] = [];
  try {
    if (spec.kind === "local") {
      const count = Math.min(spec.count, limit);
      const spawned = await Promise.allSettled(
        Array.from({ length: count }, (_, i) => spawnLocalWorker(i, tmpDir)),
      );
      for (const outcome of spawned) {
        if (outcome.status === "fulfilled") workers.push(outcome.value);
      }
      const failed = spawned.find((outcome) => outcome.status === "rejected");
      if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    } else if (spec.kind === "remote") {
      for (const [i, address] of spec.addresses.slice(0, limit).entries()) {
        const label = `worker ${i + 1} (${address.host}:${address.port})`;
        workers.push(await RemoteWorker.connect({ ...address, token: spec.token, label }));
      }
    }
    return workers;
  } catch (error) {
    for (const worker of workers) worker.kill();
    throw error;
  }
}
