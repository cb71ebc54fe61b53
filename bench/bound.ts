// What bound a run: its load generators (client-bound), the broker, or the machine. A
// comparison is only about the brokers when no load worker was at its limit, so every result
// says which it was, from the CPU figures of its measured phase:
//
//   client-bound   a load worker process used ≥ WORKER_BOUND_PERCENT of one core: its event
//                  loop (one thread runs its clients, pacing and decoding) had no time left,
//                  so a faster broker could not have been seen through it;
//   machine-bound  no worker was at its limit but the machine was ≥ MACHINE_BOUND_SHARE busy
//                  (every core: broker, workers, coordinator, programs outside the run and the
//                  host's steal); the line says who took how much;
//   otherwise      neither: the broker (or its acknowledgement path: fsync, confirms) set the
//                  rate, or the search's latency bound did.
//
// For a driver whose broker runs inside its load worker (sluice-embedded) the worker's CPU is
// the broker's too: a busy worker there is the broker at its limit, and the line says so.

import type { MachineCpu } from "./proc_cpu.ts";

/** A load worker at or above this share of one core is at its limit. */
export const WORKER_BOUND_PERCENT = 90;
/** A machine busy at or above this share of all its cores is at its limit. */
export const MACHINE_BOUND_SHARE = 0.9;

export type BoundInput = {
  driver: string;
  workerProcesses: readonly { label: string; cpuPercent: number }[];
  clientCpuPercent: number;
  brokerCpuPercent: number | null;
  machineCpu: MachineCpu | null;
  otherCpuPercent: number | null;
};

export type Bound = {
  /** A load worker was at its limit: the rate says as much about the harness as the broker. */
  clientBound: boolean;
  /** What bound the run, in words, with the figures behind it. */
  boundBy: string;
};

function percent(value: number): string {
  return `${Math.round(value)}%`;
}

/** Decides client-, machine- or neither-bound from the measured phase's CPU figures. */
export function boundOf(input: BoundInput): Bound {
  const busiest = input.workerProcesses.reduce<{ label: string; cpuPercent: number } | undefined>(
    (max, worker) => (max === undefined || worker.cpuPercent > max.cpuPercent ? worker : max),
    undefined,
  );
  const embedded = input.brokerCpuPercent === null && input.driver.endsWith("embedded");
  const broker =
    input.brokerCpuPercent === null
      ? "broker not measured"
      : `broker ${percent(input.brokerCpuPercent)}`;
  const clients = `clients ${percent(input.clientCpuPercent)}`;
  if (busiest !== undefined && busiest.cpuPercent >= WORKER_BOUND_PERCENT) {
    const what = embedded ? " (the engine runs in it: this is the broker's limit too)" : "";
    return {
      clientBound: true,
      boundBy:
        `client-bound: ${busiest.label} used ${percent(busiest.cpuPercent)} of one core ` +
        `(limit ${WORKER_BOUND_PERCENT}%)${what}; ${clients}, ${broker}`,
    };
  }
  const machine = input.machineCpu;
  const busiestText =
    busiest === undefined ? "" : `; busiest worker ${percent(busiest.cpuPercent)} of one core`;
  if (machine !== null && machine.busyPercent >= MACHINE_BOUND_SHARE * machine.cores * 100) {
    const other = input.otherCpuPercent === null ? "" : `, other ${percent(input.otherCpuPercent)}`;
    return {
      clientBound: false,
      boundBy:
        `machine-bound, not client-bound: the machine was ${percent(machine.busyPercent)} busy ` +
        `of ${machine.cores * 100}% (${broker}, ${clients}${other}, ` +
        `steal ${percent(machine.stealPercent)})${busiestText}`,
    };
  }
  const of = machine === null ? "" : ` of the machine's ${machine.cores * 100}%`;
  return {
    clientBound: false,
    boundBy: `not client-bound: ${clients}, ${broker}${of}${busiestText}`,
  };
}
