// `sluice serve` under its GC and allocator settings (./gc_tuning.ts) without the operator
// exporting them, as Kafka's start script passes the JVM its collector flags. JavaScriptCore and
// mimalloc read those variables once, when the runtime starts, so a running Bun process cannot
// take them up: serve starts itself again in place with execve(2) — the same process id, open
// descriptors, terminal and arguments, the environment with the settings added — before it
// opens anything. Signals, exit codes and a supervisor's SIGKILL reach the broker itself, as
// they would with no re-exec; a wrapper process that spawned the broker would break each.
//
// Measured (bench/RESULTS.md, "GC settings of `sluice serve`"): at 40,000 accepted records/s
// on queue-1kb the broker took 40 times fewer page faults (mimalloc keeps freed memory instead
// of giving it back and faulting it in again); its CPU per record, 0.94-1.02x in alternated
// pairs, moved less than this machine's run-to-run spread. Under Deno, on other systems, or
// where FFI is not available, serve runs under whatever the environment says, and its `gc`
// log line says which.

import { type GcMode, gcEnvironment, gcModeHolds } from "./gc_tuning.ts";

/**
 * Set in the environment of the re-executed process: it never execs again, whatever happens
 * to the other variables (an operator's wrapper that strips them would otherwise loop).
 */
export const GC_EXEC_MARK = "SLUICE_GC_EXEC";

/** Why serve did not re-exec; `exec` never returns when it does. */
export type GcExecOutcome =
  | "holds" // the environment already asks for the mode
  | "not-bun" // Deno or Node: JavaScriptCore's variables mean nothing there
  | "not-linux"
  | "marked" // this process is the re-executed one
  | "no-ffi" // bun:ffi or libc's execve could not be reached
  | "failed"; // execve returned (its errno is in the log line)

/** The environment serve needs for `mode`, or undefined when `env` already is one. */
export function gcExecEnvironment(
  env: Readonly<Record<string, string | undefined>>,
  mode: GcMode,
): Record<string, string> | undefined {
  if (gcModeHolds(env, mode)) return undefined;
  const next = gcEnvironment(env, mode);
  next[GC_EXEC_MARK] = "1";
  return next;
}

/**
 * The argument vector that starts this same command again under the same Bun: the runtime,
 * its own flags (`bun --smol ...`), then the script and its arguments. A standalone executable
 * (`bun build --compile`) has its embedded script in argv[1], which it does not take again.
 */
export function reexecArgv(
  execPath: string,
  execArgv: readonly string[],
  argv: readonly string[],
  main: string,
): string[] {
  const standalone = main.startsWith("/$bunfs/") || main.startsWith("B:/~BUN/");
  return [execPath, ...execArgv, ...argv.slice(standalone ? 2 : 1)];
}

function cString(text: string): Buffer {
  return Buffer.from(`${text}\0`, "utf8");
}

/** The part of bun:ffi used here (imported by name at run time, so Deno never loads it). */
type BunFfi = {
  dlopen(
    path: string,
    symbols: Record<string, { args: string[]; returns: string }>,
  ): { symbols: Record<string, (...args: unknown[]) => number>; close(): void };
  ptr(view: ArrayBufferView): number;
  read: { i32(pointer: number, offset: number): number };
};

/**
 * Replaces this process with the same command under `mode`'s settings, or returns why it did
 * not. Called before serve opens files or sockets: descriptors without close-on-exec would be
 * inherited by the new image.
 */
export async function execUnderGcMode(
  mode: GcMode,
): Promise<{ outcome: GcExecOutcome; errno?: number }> {
  if (process.env[GC_EXEC_MARK] === "1") return { outcome: "marked" };
  const env = gcExecEnvironment(process.env, mode);
  if (env === undefined) return { outcome: "holds" };
  const bun = (globalThis as { Bun?: { main: string } }).Bun;
  if (bun === undefined) return { outcome: "not-bun" };
  if (process.platform !== "linux") return { outcome: "not-linux" };
  let ffi: BunFfi;
  let lib: ReturnType<BunFfi["dlopen"]>;
  try {
    ffi = (await import("bun:ffi" as string)) as BunFfi;
    lib = ffi.dlopen("libc.so.6", {
      execve: { args: ["ptr", "ptr", "ptr"], returns: "i32" },
      __errno_location: { args: [], returns: "ptr" },
    });
  } catch {
    return { outcome: "no-ffi" };
  }
  const argv = reexecArgv(process.execPath, process.execArgv, process.argv, bun.main);
  const envp = Object.entries(env).map(([name, value]) => `${name}=${value}`);
  // The C strings stay referenced until execve has read them.
  const path = cString(process.execPath);
  const strings = [argv.map(cString), envp.map(cString)];
  const vectors = strings.map((list) => {
    const vector = new BigUint64Array(list.length + 1);
    list.forEach((buffer, i) => {
      vector[i] = BigInt(ffi.ptr(buffer));
    });
    return vector;
  });
  lib.symbols["execve"]!(ffi.ptr(path), ffi.ptr(vectors[0]!), ffi.ptr(vectors[1]!));
  // Only a failed execve returns (ENOENT if the runtime moved, E2BIG, ENOMEM, ...).
  const errno = ffi.read.i32(lib.symbols["__errno_location"]!(), 0);
  lib.close();
  return { outcome: "failed", errno };
}
