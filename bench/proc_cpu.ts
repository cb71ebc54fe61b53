// The broker's CPU time, read from /proc on Linux: utime + stime of the broker's process and
// its descendants (RabbitMQ's beam.smp with erl_child_setup, nats-server, redis-server, the
// `sluice serve` child). Every thread of a process counts, the kernel's write-back done on its
// behalf too. The broker is found by process id, or by the TCP port it listens on: the socket
// inode in /proc/net/tcp{,6}, then the process holding that inode among its open files.
//
// Elsewhere (no /proc, or a broker on another machine) the CPU is unknown and reported as such.

import fs from "node:fs";
import os from "node:os";
import type { BrokerProcess } from "./driver.ts";

/** /proc/PID/stat counts CPU time in USER_HZ ticks, 100 a second on every Linux ABI. */
export const USER_HZ = 100;
const TCP_LISTEN = "0A";
/** Processes looked at when searching /proc (a bound on a pathological machine). */
const PROCESSES_MAX = 100_000;

/** A process's user + system CPU time in ms, or undefined when it is gone. */
export function processCpuMs(pid: number): number | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold spaces: split after it.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return undefined;
  return ((utime + stime) * 1000) / USER_HZ;
}

function processIds(): number[] {
  let entries: string[];
  try {
    entries = fs.readdirSync("/proc");
  } catch {
    return [];
  }
  return entries
    .filter((entry) => /^\d+$/.test(entry))
    .slice(0, PROCESSES_MAX)
    .map(Number);
}

function parentOf(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined;
  }
}

/** `pid` and every process descended from it. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const candidate of processIds()) {
    const parent = parentOf(candidate);
    if (parent === undefined) continue;
    children.set(parent, [...(children.get(parent) ?? []), candidate]);
  }
  const tree: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const next = queue.shift()!;
    tree.push(next);
    queue.push(...(children.get(next) ?? []));
  }
  return tree;
}

/** The inodes of sockets listening on `port` (IPv4 and IPv6). */
function listeningInodes(port: number): Set<string> {
  const inodes = new Set<string>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      if (local === undefined || fields[3] !== TCP_LISTEN) continue;
      if (Number.parseInt(local.slice(local.lastIndexOf(":") + 1), 16) === port) {
        inodes.add(fields[9]!);
      }
    }
  }
  return inodes;
}

/** The process listening on TCP `port` on this machine, or undefined. */
export function listeningProcess(port: number): number | undefined {
  const inodes = listeningInodes(port);
  if (inodes.size === 0) return undefined;
  const wanted = new Set([...inodes].map((inode) => `socket:[${inode}]`));
  for (const pid of processIds()) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (wanted.has(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))) return pid;
      } catch {
        // The descriptor closed while we looked.
      }
    }
  }
  return undefined;
}

/** True when `host` names this machine (loopback, or one of its addresses). */
export function isLocalHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, "");
  if (bare === "localhost" || bare === "::1" || bare.startsWith("127.")) return true;
  if (bare === os.hostname()) return true;
  return Object.values(os.networkInterfaces()).some((list) =>
    (list ?? []).some((address) => address.address === bare),
  );
}

/** Reads the broker's CPU time over intervals; `note` says what is measured, or why not. */
export class BrokerCpuMeter {
  readonly pids: number[];
  readonly note: string;
  #lastMs: number | undefined;
  #lastWallMs = 0;

  constructor(broker: BrokerProcess | null | undefined) {
    const located = locate(broker);
    this.pids = located.pids;
    this.note = located.note;
    this.#lastMs = this.#cpuMs();
    this.#lastWallMs = performance.now();
  }

  get known(): boolean {
    return this.pids.length > 0;
  }

  #cpuMs(): number | undefined {
    if (this.pids.length === 0) return undefined;
    let sum = 0;
    let any = false;
    for (const pid of this.pids) {
      const ms = processCpuMs(pid);
      if (ms === undefined) continue;
      sum += ms;
      any = true;
    }
    return any ? sum : undefined;
  }

  /** The broker's CPU time so far, ms (undefined when unknown). */
  totalMs(): number | undefined {
    return this.#cpuMs();
  }

  /** CPU over the interval since the last call, in % of one core; null when unknown. */
  intervalPercent(): number | null {
    const now = this.#cpuMs();
    const wallMs = performance.now();
    const before = this.#lastMs;
    const elapsedMs = wallMs - this.#lastWallMs;
    this.#lastMs = now;
    this.#lastWallMs = wallMs;
    if (now === undefined || before === undefined || elapsedMs <= 0) return null;
    return ((now - before) / elapsedMs) * 100;
  }
}

function locate(broker: BrokerProcess | null | undefined): { pids: number[]; note: string } {
  if (broker === null || broker === undefined) {
    return { pids: [], note: "the driver does not say where its broker runs" };
  }
  if (!fs.existsSync("/proc/self/stat")) {
    return { pids: [], note: "no /proc on this system: broker CPU not measured" };
  }
  if (broker.kind === "in-process") {
    return { pids: [], note: `${broker.what}: its CPU is part of the client CPU` };
  }
  if (broker.kind === "pid") {
    return { pids: processTree(broker.pid), note: `${broker.what} (pid ${broker.pid})` };
  }
  if (!isLocalHost(broker.host)) {
    return { pids: [], note: `${broker.what} at ${broker.host}:${broker.port} is not local` };
  }
  const pid = listeningProcess(broker.port);
  if (pid === undefined) {
    return { pids: [], note: `no process listens on port ${broker.port} here (${broker.what})` };
  }
  return {
    pids: processTree(pid),
    note: `${broker.what}: ${describe(pid)} listening on :${broker.port}`,
  };
}

function describe(pid: number): string {
  try {
    const comm = fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim();
    return `${comm} (pid ${pid})`;
  } catch {
    return `pid ${pid}`;
  }
}

/** The whole machine's CPU time from /proc/stat, in USER_HZ ticks over every core. */
export type MachineTicks = { busy: number; steal: number; iowait: number; total: number };

export function machineTicks(): MachineTicks | undefined {
  let text: string;
  try {
    text = fs.readFileSync("/proc/stat", "utf8");
  } catch {
    return undefined;
  }
  const line = text.split("\n").find((candidate) => candidate.startsWith("cpu "));
  if (line === undefined) return undefined;
  // user nice system idle iowait irq softirq steal guest guest_nice
  const fields = line.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = fields;
  if (fields.length < 8 || fields.some((value) => !Number.isFinite(value))) return undefined;
  const busy = user! + nice! + system! + irq! + softirq!;
  return { busy, steal: steal!, iowait: iowait!, total: busy + idle! + iowait! + steal! };
}

/** The machine's CPU between two readings: busy, stolen and waiting on I/O, % of one core. */
export type MachineCpu = {
  busyPercent: number;
  stealPercent: number;
  iowaitPercent: number;
  cores: number;
};

export function machineCpuBetween(
  start: MachineTicks | undefined,
  end: MachineTicks | undefined,
  cores: number,
): MachineCpu | null {
  if (start === undefined || end === undefined) return null;
  const total = end.total - start.total;
  if (total <= 0) return null;
  const share = (ticks: number) => (ticks / total) * 100 * cores;
  return {
    busyPercent: share(end.busy - start.busy),
    stealPercent: share(end.steal - start.steal),
    iowaitPercent: share(end.iowait - start.iowait),
    cores,
  };
}
