// Shared test helpers: run a script under the current runtime, make and remove temp dirs,
// wait for a condition.

import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const PROJECT_ROOT = join(import.meta.dirname, "..");

const isDeno = (process.versions as Record<string, string | undefined>)["deno"] !== undefined;

/** argv that runs a TypeScript file under the runtime running this test. */
export function runtimeArgv(script: string, args: string[] = []): [string, string[]] {
  if (isDeno) return [process.execPath, ["run", "-A", script, ...args]];
  return [process.execPath, [script, ...args]];
}

export function runScript(
  script: string,
  args: string[],
  options: { input?: string; cwd?: string } = {},
): SpawnSyncReturns<string> {
  const [command, argv] = runtimeArgv(join(PROJECT_ROOT, script), args);
  return spawnSync(command, argv, {
    cwd: options.cwd ?? PROJECT_ROOT,
    input: options.input ?? "",
    encoding: "utf8",
    timeout: 60_000,
  });
}

/** A temp directory removed when the returned handle is disposed. */
export function tempDir(prefix = "sluice-test-"): { path: string } & Disposable {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, [Symbol.dispose]: () => rmSync(path, { recursive: true, force: true }) };
}

/** Polls `condition` until true or `timeoutMs` passes; throws with `what` on timeout. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    // tidy: allow-timeout the poll interval of a condition wait, not a wait for time itself
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * mulberry32: a small, fast, well-mixed 32-bit PRNG returning numbers in [0, 1). Random tests
 * draw from it with a printed seed, so a failure replays from that seed.
 */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
