// Helpers shared by the peer-broker drivers (RabbitMQ, NATS JetStream, Redis Streams, Kafka):
// reading driver options, choosing a partition, naming things the way each broker allows,
// and viewing payloads as Buffers without copying.

import { Buffer } from "node:buffer";
import fs from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";

/** How long `initialize()` waits for a peer to accept a connection before calling it absent. */
export const CONNECT_TIMEOUT_MS_DEFAULT = 2_000;

/** The command that installs and starts the Debian-packaged peers on 127.0.0.1. */
export const PEERS_HINT = "run `scripts/peers.sh install && scripts/peers.sh start`";

export type DriverOptions = Readonly<Record<string, string>>;

/** `options[key]`, else the environment variable `envName`, else `fallback`. */
export function optionString(
  options: DriverOptions,
  key: string,
  fallback: string,
  envName?: string,
): string {
  const value = options[key];
  if (value !== undefined && value !== "") return value;
  if (envName !== undefined) {
    const fromEnv = process.env[envName];
    if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  }
  return fallback;
}

/**
 * The loopback port scripts/peers.sh starts a peer on: the environment variable `envName`
 * (SLUICE_RABBITMQ_PORT, SLUICE_NATS_PORT, SLUICE_REDIS_PORT) when set, else `fallback`.
 */
export function peerPort(envName: string, fallback: number): number {
  const raw = process.env[envName];
  if (raw === undefined || raw === "") return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new RangeError(`${envName}=${raw} is not a TCP port`);
  }
  return port;
}

/** An integer option within [min, max]; a RangeError names the key and the bad value. */
export function optionInt(
  options: DriverOptions,
  key: string,
  fallback: number,
  limits: { min: number; max: number },
): number {
  const raw = options[key];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < limits.min || value > limits.max) {
    throw new RangeError(
      `Driver option ${key}=${raw} is not an integer in [${limits.min}, ${limits.max}]`,
    );
  }
  return value;
}

/** One of `choices`; a RangeError names the key, the bad value and the choices. */
export function optionChoice<T extends string>(
  options: DriverOptions,
  key: string,
  choices: readonly T[],
  fallback: T,
): T {
  const raw = options[key];
  if (raw === undefined || raw === "") return fallback;
  const found = choices.find((choice) => choice === raw);
  if (found === undefined) {
    throw new RangeError(`Driver option ${key}=${raw} is not one of ${choices.join(", ")}`);
  }
  return found;
}

/**
 * Picks the partition of each message: keyless messages go round-robin (each producer starts at
 * a different partition), keyed ones by an FNV-1a hash of the key, so equal keys stay together.
 */
export class PartitionPicker {
  readonly #count: number;
  #next: number;

  constructor(count: number, start = 0) {
    if (!Number.isInteger(count) || count < 1) {
      throw new RangeError(`Partition count ${count} is not a positive integer`);
    }
    this.#count = count;
    this.#next = start % count;
  }

  pick(key: Uint8Array | null): number {
    if (key === null) {
      const partition = this.#next;
      this.#next = partition + 1 === this.#count ? 0 : partition + 1;
      return partition;
    }
    let hash = 0x811c9dc5;
    for (const byte of key) hash = Math.imul(hash ^ byte, 0x01000193);
    return (hash >>> 0) % this.#count;
  }
}

/** A Buffer over the same memory as `bytes` (client libraries want Buffers; no copy is made). */
export function bufferView(bytes: Uint8Array): Buffer {
  if (Buffer.isBuffer(bytes)) return bytes;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * A name made of the characters every peer accepts in queue, stream, subject and key names
 * (letters, digits, `_`, `-`); anything else becomes `_`.
 */
export function safeName(name: string): string {
  if (name.length === 0) throw new RangeError("Topic name is empty");
  return name.replace(/[^A-Za-z0-9_-]/g, "_");
}

/** The message of anything thrown, for one-line error reports. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === "string" && !error.message.includes(code)
      ? `${error.message} (${code})`
      : error.message;
  }
  return String(error);
}

/** Rejects with `what` timed out when `promise` takes longer than `timeoutMs`. */
export function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A counter-based id unique within this process, for consumer names and tags. */
let uniqueCounter = 0;
export function uniqueId(prefix: string): string {
  uniqueCounter += 1;
  return `${prefix}-${process.pid}-${uniqueCounter}`;
}

/**
 * The installed version of an npm package (its package.json, found in node_modules from this
 * folder upwards), or "unknown". Printed with each driver's settings: a comparison names the
 * client library and version it ran.
 */
export function packageVersion(name: string): string {
  let dir = import.meta.dirname;
  for (;;) {
    const file = join(dir, "node_modules", name, "package.json");
    if (fs.existsSync(file)) {
      try {
        const version = (JSON.parse(fs.readFileSync(file, "utf8")) as { version?: unknown })
          .version;
        return typeof version === "string" ? version : "unknown";
      } catch {
        return "unknown";
      }
    }
    const parent = dirname(dir);
    if (parent === dir) return "unknown";
    dir = parent;
  }
}

/** host and port of a URL such as amqp://user:pass@host:5672/vhost (default port if none). */
export function urlAddress(url: string, defaultPort: number): { host: string; port: number } {
  try {
    const parsed = new URL(url);
    const host = parsed.hostname.replace(/^\[|\]$/g, "");
    const port = parsed.port === "" ? defaultPort : Number(parsed.port);
    return { host, port };
  } catch {
    return { host: "unknown", port: defaultPort };
  }
}
