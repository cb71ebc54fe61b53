// Child processes for the TCP benchmark: the broker (`sluice serve`) and the loopback sink run
// in processes of their own, so client and server each get a core, as they would on a real
// deployment's two machines (here: one machine, two cores).

import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";

const ROOT = join(import.meta.dirname, "..", "..");

export type Child = {
  process: ChildProcess;
  port: number;
  /** The port of an `http listening on HOST:PORT` line printed before the main one, if any. */
  httpPort: number | undefined;
  stop(): Promise<void>;
};

/**
 * Starts a script under the current runtime and waits for "listening on HOST:PORT" (the first
 * such line that is not the HTTP listener's, which `sluice serve` prints before the others).
 */
export function startChild(
  script: string,
  args: string[],
  env?: Record<string, string>,
): Promise<Child> {
  const isDeno = (process.versions as Record<string, string | undefined>)["deno"] !== undefined;
  const argv = isDeno ? ["run", "-A", join(ROOT, script), ...args] : [join(ROOT, script), ...args];
  const child = spawn(process.execPath, argv, {
    stdio: ["ignore", "pipe", "inherit"],
    ...(env === undefined ? {} : { env }),
  });
  return new Promise((resolve, reject) => {
    let output = "";
    child.once("exit", (code) => reject(new Error(`${script} exited (${code}): ${output}`)));
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      const match = /(?<!http )listening on [\d.]+:(\d+)/.exec(output);
      if (match === null) return;
      const http = /http listening on [\d.]+:(\d+)/.exec(output);
      child.removeAllListeners("exit");
      resolve({
        process: child,
        port: Number(match[1]),
        httpPort: http === null ? undefined : Number(http[1]),
        stop: () =>
          new Promise<void>((done) => {
            if (child.exitCode !== null) return done();
            child.once("exit", () => done());
            process.kill(child.pid!, "SIGTERM");
          }),
      });
    });
  });
}

export const brokerScript = "bin/sluice.ts";
export const sinkScript = "bench/tcp/sink.ts";
