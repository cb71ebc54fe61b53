// Command-line flags of the storage-engine benchmark (bench/engine.bench.ts). Sizes take binary
// suffixes as dd does (256M = 256 MiB, 4G = 4 GiB), so `--bytes 4G` writes exactly what
// `dd bs=1M count=4096` writes.

import os from "node:os";

export type EngineBenchOptions = {
  /** Bytes appended with fsync "never", then read back and looked up in. */
  bytes: number;
  /** Bytes appended with fsync "always" (smaller by default: every round waits for the disk). */
  fsyncBytes: number;
  /** Bytes a child process appends before it is killed, for the recovery figure. */
  recoverBytes: number;
  /** Random lookups on each log. */
  lookups: number;
  /** Appends kept un-awaited at once, as a pipelining producer does. */
  inFlight: number;
  /** Parent of the temporary directory the benchmark writes in. */
  dir: string;
  /** Print only the JSON object on stdout. */
  json: boolean;
  help: boolean;
};

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;
const SUFFIX_BYTES: Record<string, number> = { "": 1, k: KIB, m: MIB, g: GIB, t: 1024 * GIB };

export const ENGINE_BENCH_DEFAULTS: Readonly<EngineBenchOptions> = Object.freeze({
  bytes: 4 * GIB,
  fsyncBytes: GIB,
  recoverBytes: 256 * MIB,
  lookups: 100_000,
  inFlight: 16,
  dir: os.tmpdir(),
  json: false,
  help: false,
});

/** A run this small says nothing about throughput; refuse it instead of printing noise. */
const BENCH_BYTES_MIN = 16 * MIB;
const IN_FLIGHT_MAX = 1024;
const LOOKUPS_MAX = 100_000_000;

export const ENGINE_BENCH_USAGE = `usage: bun bench/engine.bench.ts [flags]

  --bytes N          bytes appended with fsync "never", read back, looked up (default 4G)
  --fsync-bytes N    bytes appended with fsync "always" (default 1G)
  --recover-bytes N  bytes a child appends before SIGKILL, for recovery (default 256M)
  --lookups N        random single-offset reads per log (default 100000)
  --in-flight N      un-awaited appends kept in flight (default 16)
  --dir DIR          where the temporary directory goes (default ${os.tmpdir()})
  --json             print only the JSON result on stdout (progress still goes to stderr)

Sizes take binary suffixes: 256M = 256 MiB, 4G = 4 GiB (also 4GiB, 4GB).
The last stdout line is always one JSON object; rates are in MB/s with MB = 10^6 bytes, as dd.`;

/** Parses "4G", "256M", "1.5G", "4GiB", "4096" into bytes. */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (match === null) throw new RangeError(`Size "${text}" is not a number with K/M/G/T suffix`);
  const bytes = Math.round(Number(match[1]) * SUFFIX_BYTES[match[2]!.toLowerCase()]!);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new RangeError(`Size "${text}" must be a positive number of bytes`);
  }
  return bytes;
}

function positiveInteger(flag: string, text: string, max: number): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new RangeError(`${flag} ${text} must be an integer in [1, ${max}]`);
  }
  return value;
}

function atLeast(flag: string, bytes: number, min: number): number {
  if (bytes < min) throw new RangeError(`${flag} ${bytes} is below the minimum of ${min} bytes`);
  return bytes;
}

/** Reads the flags; throws RangeError naming the flag and value on anything wrong. */
export function parseEngineBenchArgs(args: readonly string[]): EngineBenchOptions {
  const options: EngineBenchOptions = { ...ENGINE_BENCH_DEFAULTS };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const [flag, inline] = arg.includes("=") ? arg.split("=", 2) : [arg, undefined];
    const value = (): string => {
      const text = inline ?? args[++i];
      if (text === undefined) throw new RangeError(`${flag} needs a value`);
      return text;
    };
    if (flag === "--json") options.json = true;
    else if (flag === "--help" || flag === "-h") options.help = true;
    else if (flag === "--bytes") options.bytes = atLeast(flag, parseSize(value()), BENCH_BYTES_MIN);
    else if (flag === "--fsync-bytes") {
      options.fsyncBytes = atLeast(flag, parseSize(value()), BENCH_BYTES_MIN);
    } else if (flag === "--recover-bytes") {
      options.recoverBytes = atLeast(flag, parseSize(value()), BENCH_BYTES_MIN);
    } else if (flag === "--lookups") options.lookups = positiveInteger(flag, value(), LOOKUPS_MAX);
    else if (flag === "--in-flight")
      options.inFlight = positiveInteger(flag, value(), IN_FLIGHT_MAX);
    else if (flag === "--dir") options.dir = value();
    else throw new RangeError(`Unknown flag ${arg}\n\n${ENGINE_BENCH_USAGE}`);
  }
  return options;
}
