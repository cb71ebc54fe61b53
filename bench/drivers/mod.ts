// The drivers by name. Each lives in its own module, `bench/drivers/<file>.ts`, exporting
// `createDriver: DriverFactory` (see ../driver.ts), and is imported only when asked for: a
// driver whose client package is not installed, or whose module is not there, fails alone
// (DriverUnavailableError, skipped with its hint) and never stops the others from loading.

import fs from "node:fs";
import { fileURLToPath } from "node:url";
import {
  type Driver,
  type DriverConfig,
  type DriverFactory,
  DriverUnavailableError,
} from "../driver.ts";

export type DriverEntry = {
  name: string;
  /** The module, relative to this folder. */
  file: string;
  /** A peer system (another broker), as opposed to sluice itself. */
  peer: boolean;
  /**
   * The broker lives inside the process that runs the driver (sluice-embedded): with worker
   * processes, the whole run (topics, producers, consumers) goes to one worker.
   */
  inProcess: boolean;
  /**
   * It implements the workload's `ackMode: per-message` (createAckingConsumer); a driver that
   * does not is skipped for such a workload, saying so, rather than measuring something else.
   */
  perMessageAck: boolean;
  /** It delivers a message no sooner than sendAsync's `delayMs` (deliveryDelayMsMax). */
  delayedDelivery: boolean;
  summary: string;
};

export const DRIVERS: readonly DriverEntry[] = [
  {
    name: "sluice-embedded",
    file: "sluice_embedded.ts",
    peer: false,
    inProcess: true,
    perMessageAck: true,
    delayedDelivery: true,
    summary: "the storage engine in-process, no network",
  },
  {
    name: "sluice",
    file: "sluice.ts",
    peer: false,
    inProcess: false,
    perMessageAck: true,
    delayedDelivery: true,
    summary: "a sluice server over TCP",
  },
  {
    name: "rabbitmq",
    file: "rabbitmq.ts",
    peer: true,
    inProcess: false,
    perMessageAck: true,
    delayedDelivery: true,
    summary: "RabbitMQ (AMQP 0-9-1)",
  },
  {
    name: "nats",
    file: "nats.ts",
    peer: true,
    inProcess: false,
    perMessageAck: false,
    delayedDelivery: false,
    summary: "NATS JetStream",
  },
  {
    name: "redis",
    file: "redis.ts",
    peer: true,
    inProcess: false,
    perMessageAck: false,
    delayedDelivery: false,
    summary: "Redis Streams",
  },
  {
    name: "sluice-kafka",
    file: "sluice_kafka.ts",
    peer: false,
    inProcess: false,
    perMessageAck: false,
    delayedDelivery: false,
    summary: "a sluice server over Kafka's protocol, driven by kafkajs",
  },
  {
    name: "kafka",
    file: "kafka.ts",
    peer: true,
    inProcess: false,
    perMessageAck: false,
    delayedDelivery: false,
    summary: "an Apache Kafka broker you run",
  },
];

export function driverNames(): string[] {
  return DRIVERS.map((entry) => entry.name);
}

export function driverEntry(name: string): DriverEntry {
  const entry = DRIVERS.find((candidate) => candidate.name === name);
  if (entry === undefined) {
    throw new RangeError(`Unknown driver '${name}'; known drivers: ${driverNames().join(", ")}`);
  }
  return entry;
}

/**
 * Parses a comma-separated driver list ("sluice,rabbitmq"); every name must be known and
 * appear once.
 */
export function parseDriverList(list: string): string[] {
  const names = list
    .split(",")
    .map((name) => name.trim())
    .filter((name) => name.length > 0);
  if (names.length === 0) throw new RangeError(`--drivers '${list}' names no driver`);
  for (const name of names) driverEntry(name);
  const repeated = names.find((name, i) => names.indexOf(name) !== i);
  if (repeated !== undefined) throw new RangeError(`--drivers names '${repeated}' twice`);
  return names;
}

/** Imports a driver's module and builds the driver (not yet initialized). */
export async function createDriver(name: string, config: DriverConfig): Promise<Driver> {
  const entry = driverEntry(name);
  const url = new URL(`./${entry.file}`, import.meta.url);
  if (!fs.existsSync(fileURLToPath(url))) {
    throw new DriverUnavailableError(
      `the ${name} driver is not part of this checkout (bench/drivers/${entry.file} is missing)`,
      "update sluice to a version that has it",
    );
  }
  let module: { createDriver?: unknown };
  try {
    // A computed specifier: the module, and the client packages it imports, load only now.
    module = (await import(url.href)) as { createDriver?: unknown };
  } catch (error) {
    throw new DriverUnavailableError(
      `the ${name} driver could not load: ${(error as Error).message}`,
      "run `npm install` to install its client package",
    );
  }
  if (typeof module.createDriver !== "function") {
    throw new TypeError(`bench/drivers/${entry.file} does not export a createDriver function`);
  }
  const driver = await (module.createDriver as DriverFactory)(config);
  if (driver.name !== name) {
    throw new TypeError(`bench/drivers/${entry.file} made a driver named '${driver.name}'`);
  }
  return driver;
}
