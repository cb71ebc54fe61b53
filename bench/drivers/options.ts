// Reading driver options (`--driver-options key=value,...`): each value is checked, and a bad
// one is a RangeError naming the key and the value.

import type { FsyncPolicy } from "../../engine/mod.ts";

type Options = Readonly<Record<string, string>>;

export function integerOption(
  options: Options,
  key: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const text = options[key];
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(`driver option ${key}=${text} must be an integer in [${min}, ${max}]`);
  }
  return value;
}

/** "always", "never", or an fsync interval in milliseconds. */
export function fsyncOption(options: Options, key: string, fallback: FsyncPolicy): FsyncPolicy {
  const text = options[key];
  if (text === undefined) return fallback;
  if (text === "always" || text === "never") return text;
  const intervalMs = Number(text);
  if (!Number.isSafeInteger(intervalMs) || intervalMs < 1) {
    throw new RangeError(
      `driver option ${key}=${text} must be always, never, or an interval in ms (≥ 1)`,
    );
  }
  return { intervalMs };
}

export function describeFsync(fsync: FsyncPolicy): string {
  return typeof fsync === "string" ? fsync : `every ${fsync.intervalMs} ms`;
}

/** Parses "key=value,key=value"; keys may be scoped to one driver as "driver.key". */
export function parseDriverOptions(text: string | undefined): Record<string, string> {
  const options: Record<string, string> = {};
  if (text === undefined || text.trim() === "") return options;
  for (const pair of text.split(",")) {
    const at = pair.indexOf("=");
    const key = pair.slice(0, at).trim();
    if (at < 1 || key.length === 0) {
      throw new RangeError(`--driver-options entry '${pair}' is not key=value`);
    }
    options[key] = pair.slice(at + 1).trim();
  }
  return options;
}

/** The options one driver sees: unscoped keys, then "driver.key" keys with the scope removed. */
export function optionsFor(driver: string, options: Options): Record<string, string> {
  const mine: Record<string, string> = {};
  for (const [key, value] of Object.entries(options)) {
    if (!key.includes(".")) mine[key] = value;
  }
  const prefix = `${driver}.`;
  for (const [key, value] of Object.entries(options)) {
    if (key.startsWith(prefix)) mine[key.slice(prefix.length)] = value;
  }
  return mine;
}
