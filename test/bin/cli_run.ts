// Running the `sluice` command in tests: a child process with its output collected, and one
// `sluice serve` process per describe block for the client commands to talk to.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { after, before } from "node:test";
import { PROJECT_ROOT, runtimeArgv, tempDir, waitFor } from "../helpers.ts";
import {
  type ServerProcess,
  startServerProcess,
  stopServerProcess,
} from "../protocol/server/server_process.ts";

export type Result = { status: number | null; stdout: string; stderr: string };

export type SluiceChild = {
  child: ChildProcess;
  /** Resolves with the exit code once the output pipes have been read to the end. */
  exited: Promise<number | null>;
  stdout(): string;
  stderr(): string;
};

/**
 * `env`: variables added to the test's own for one command; `exactEnv`: the whole environment
 * instead. `bun`: run under this Bun executable whichever runtime runs the tests.
 */
export type RunOptions = { env?: NodeJS.ProcessEnv; exactEnv?: NodeJS.ProcessEnv; bun?: string };

/** Starts `sluice ARGS`, collecting its output. */
export function spawnSluice(args: string[], options: RunOptions = {}): SluiceChild {
  const script = join(PROJECT_ROOT, "bin/sluice.ts");
  const [command, argv] =
    options.bun === undefined ? runtimeArgv(script, args) : [options.bun, [script, ...args]];
  const env = options.exactEnv ?? { ...process.env, ...options.env };
  const child = spawn(command, argv, { stdio: ["pipe", "pipe", "pipe"], env });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  // "close", not "exit": by then the output pipes have been read to the end.
  const exited = new Promise<number | null>((resolve) => child.once("close", resolve));
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

/** Runs `sluice ARGS` with `input` on stdin; resolves when it has exited. */
export async function sluice(
  args: string[],
  input = "",
  options: RunOptions = {},
): Promise<Result> {
  const run = spawnSluice(args, options);
  run.child.stdin!.end(input);
  const status = await run.exited;
  return { status, stdout: run.stdout(), stderr: run.stderr() };
}

/**
 * Starts `sluice serve ARGS` and waits for its `sluice listening on` line (or its exit); stop
 * it with `process.kill(child.pid, "SIGTERM")` and await `exited`.
 */
export async function serveUntilListening(
  args: string[],
  options: RunOptions = {},
): Promise<SluiceChild & { port: number }> {
  const run = spawnSluice(["serve", ...args], options);
  let exited = false;
  void run.exited.then(() => {
    exited = true;
  });
  const listening = /sluice listening on [\d.]+:(\d+)/;
  await waitFor(() => listening.test(run.stdout()) || exited, "the broker to listen", 20_000);
  const match = listening.exec(run.stdout());
  if (match === null) throw new Error(`serve did not start: ${run.stdout()}${run.stderr()}`);
  return { ...run, port: Number(match[1]) };
}

/** Runs a command that must exit 0. */
export async function ok(args: string[], input = ""): Promise<Result> {
  const result = await sluice(args, input);
  assert.equal(result.status, 0, `sluice ${args.join(" ")}: ${result.stderr}`);
  return result;
}

/** The non-empty lines of `text`. */
export function lines(text: string): string[] {
  return text.split("\n").filter((line) => line.length > 0);
}

/**
 * A `sluice serve` process for the tests of one describe block (call it in the block's body):
 * started before the first test on a fresh data directory (`dataSubdir` inside the temporary
 * one, if given), stopped and removed after the last. `run` and `ok` add `--broker` to every
 * command.
 */
export function useServer(options: { dataSubdir?: string } = {}) {
  const state: { dir?: { path: string } & Disposable; server?: ServerProcess } = {};
  before(async () => {
    state.dir = tempDir();
    const data =
      options.dataSubdir === undefined ? state.dir.path : join(state.dir.path, options.dataSubdir);
    state.server = await startServerProcess(data);
  });
  after(async () => {
    if (state.server !== undefined) await stopServerProcess(state.server, "SIGTERM");
    state.dir?.[Symbol.dispose]();
  });
  const broker = () => ["--broker", `127.0.0.1:${state.server!.port}`];
  const run = (args: string[], input = "") => sluice([...args, ...broker()], input);
  return {
    broker,
    port: () => state.server!.port,
    run,
    ok: (args: string[], input = "") => ok([...args, ...broker()], input),
    /** The temporary directory (the data directory's parent when `dataSubdir` is given). */
    dir: () => state.dir!.path,
    output: () => state.server?.output() ?? "",
    /** The `queues list --json` object of queue `name`, if listed. */
    queueJson: async (name: string) => {
      const { stdout } = await ok(["queues", "list", "--json", ...broker()]);
      const all = lines(stdout).map((line) => JSON.parse(line) as Record<string, unknown>);
      return all.find((queue) => queue["name"] === name);
    },
  };
}
