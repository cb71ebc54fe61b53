// Child processes for tests: run a command to its end, or start a long-running one (a broker)
// and wait until it prints the line that says it is ready. Output is collected as text; a
// started process is stopped (SIGTERM, then SIGKILL) when its handle is disposed.

import { type ChildProcess, spawn } from "node:child_process";
import { waitFor } from "./helpers.ts";

export type SpawnOptions = { cwd?: string; env?: NodeJS.ProcessEnv; input?: string };
export type Finished = { status: number | null; stdout: string; stderr: string };

const STOP_MS_MAX = 10_000;

function collect(child: ChildProcess): { stdout: () => string; stderr: () => string } {
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return { stdout: () => stdout, stderr: () => stderr };
}

/** Runs `command` to its end, asynchronously (the test's own servers keep serving meanwhile). */
export function run(
  command: string,
  args: readonly string[],
  options: SpawnOptions = {},
): Promise<Finished> {
  const child = spawn(command, args, { cwd: options.cwd, env: options.env });
  const output = collect(child);
  child.stdin.end(options.input ?? "");
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    // "close", not "exit": by then the output pipes have been read to the end.
    child.once("close", (status) =>
      resolve({ status, stdout: output.stdout(), stderr: output.stderr() }),
    );
  });
}

export type Started = {
  child: ChildProcess;
  /** The first match of the ready pattern in stdout. */
  ready: RegExpExecArray;
  output: () => string;
  /** Sends `signal` and resolves with the exit code (null when the signal ended it). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
} & AsyncDisposable;

/** Starts `command` and resolves once its stdout matches `ready`; rejects if it exits first. */
export async function start(
  command: string,
  args: readonly string[],
  ready: RegExp,
  options: SpawnOptions & { readyTimeoutMs?: number } = {},
): Promise<Started> {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output = collect(child);
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code) => {
      exitCode = code;
      resolve(code);
    });
  });
  const text = () => output.stdout() + output.stderr();
  await waitFor(
    () => ready.test(output.stdout()) || exitCode !== undefined,
    `${command} ${args.join(" ")} to print ${ready}`,
    options.readyTimeoutMs ?? 30_000,
  );
  const match = ready.exec(output.stdout());
  if (match === null)
    throw new Error(`${command} exited with ${exitCode} before ready:\n${text()}`);
  const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
    if (exitCode !== undefined) return exitCode;
    // process.kill, not child.kill: Deno's child.kill reports the signal as the exit reason
    // even when the child handled it and exited with a code of its own.
    process.kill(child.pid!, signal);
    // tidy: allow-timeout a deadline for a process that ignores SIGTERM, not a wait for time
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_MS_MAX);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
    }
  };
  const dispose = async () => {
    await stop();
  };
  return { child, ready: match, output: text, stop, [Symbol.asyncDispose]: dispose };
}
