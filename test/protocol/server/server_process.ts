// Runs `sluice serve` as a child process for tests that restart or kill the server.

import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { PROJECT_ROOT, runtimeArgv, waitFor } from "../../helpers.ts";

export type ServerProcess = { child: ChildProcess; port: number; output: () => string };

export async function startServerProcess(dataDir: string): Promise<ServerProcess> {
  const [command, args] = runtimeArgv(join(PROJECT_ROOT, "bin/sluice.ts"), [
    "serve",
    "--data",
    dataDir,
    "--port",
    "0",
  ]);
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  let exited = false;
  child.once("exit", () => {
    exited = true;
  });
  await waitFor(
    () => /listening on [\d.]+:\d+/.test(stdout) || exited,
    "the server to print its address",
    20_000,
  );
  const match = /listening on [\d.]+:(\d+)/.exec(stdout);
  if (match === null) throw new Error(`server did not start: ${stdout}${stderr}`);
  return { child, port: Number(match[1]), output: () => stdout + stderr };
}

/** Sends `signal` and resolves with the exit code (null when the signal ended the process). */
export async function stopServerProcess(
  server: ServerProcess,
  signal: NodeJS.Signals,
): Promise<number | null> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) {
    return server.child.exitCode;
  }
  const exited = new Promise<number | null>((resolve) =>
    server.child.once("exit", (code) => resolve(code)),
  );
  // process.kill, not child.kill: Deno's child.kill reports the signal as the exit reason
  // even when the child handled it and exited with a code of its own.
  process.kill(server.child.pid!, signal);
  return exited;
}
