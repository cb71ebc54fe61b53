// The one ApiVersions answer, and version caps: lower advertised maxima, by API key, so a test
// (or an operator) can make clients speak the versions an older broker would have served.

import { MESSAGES } from "./messages.ts";
import type { Struct } from "./schema.ts";

/** Advertised maximum by API key; an API not in the map advertises sluice's own maximum. */
export type VersionCaps = ReadonlyMap<number, number>;

/** The ApiVersions body: every served API with its (capped) range. */
export function apiVersionsBody(caps: VersionCaps, errorCode = 0): Struct {
  const apiKeys = [...MESSAGES.values()]
    .sort((a, b) => a.key - b.key)
    .map((message) => ({
      apiKey: message.key,
      minVersion: message.min,
      maxVersion: Math.max(
        message.min,
        Math.min(message.max, caps.get(message.key) ?? message.max),
      ),
    }));
  return { errorCode, apiKeys, throttleTimeMs: 0 };
}

/** Produce's oldest version that carries RecordBatch v2 (0-2 are advertised but refused). */
const PRODUCE_OLDEST_SERVED = 3;

/**
 * Every API capped at the oldest version sluice serves, so clients must speak it (Produce at
 * 3: versions 0-2 are advertised, for librdkafka's sake, but refused).
 */
export function minimumCaps(): VersionCaps {
  return new Map(
    [...MESSAGES.values()].map((message) => [
      message.key,
      message.key === 0 ? PRODUCE_OLDEST_SERVED : message.min,
    ]),
  );
}

/**
 * Caps from text: `min` (every API at its minimum) or `KEY=MAX,...` by API key or name
 * (`Fetch=4,3=1`). A key or version outside what sluice serves is a RangeError naming it.
 */
export function parseVersionCaps(text: string): VersionCaps {
  if (text === "min") return minimumCaps();
  const caps = new Map<number, number>();
  for (const entry of text.split(",")) {
    const [name, value] = entry.split("=");
    const message = [...MESSAGES.values()].find((m) => m.name === name || String(m.key) === name);
    const max = Number(value);
    if (message === undefined) throw new RangeError(`version cap '${entry}': no such API`);
    if (!Number.isInteger(max) || max < message.min || max > message.max) {
      throw new RangeError(
        `version cap '${entry}': ${message.name} serves versions ${message.min}-${message.max}`,
      );
    }
    caps.set(message.key, max);
  }
  return caps;
}
