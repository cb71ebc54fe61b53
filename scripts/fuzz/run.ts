// The frame fuzzer's runner: a server in this process on port 0, several clients sending cases
// (frames.ts) on fresh connections, each case ended by a probe the server must answer (or by
// the server closing the connection, which is a legitimate answer to a bad frame). A failure:
//
//   hang       neither the probe's answer nor a close within probeTimeoutMs
//   invariant  the server's onFatal was called (a broken invariant: a bug in sluice)
//   internal   the server logged an internal error (an exception escaped a connection)
//   uncaught   an uncaught exception or unhandled rejection in the process
//   down       after the run, a fresh connection is not served
//   close      the server could not shut down cleanly (its engine's close threw)
//
// The cases in flight when a failure showed are replayed one at a time on a fresh server to
// find the one that causes it; each found is saved as JSON (replayable by
// test/protocol/fuzz_cases.test.ts).

import fs from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SluiceServer } from "../../protocol/server/mod.ts";
import {
  FUZZ_PARTITIONS,
  FUZZ_TOPIC,
  type FuzzCase,
  handshakeFrame,
  makeCase,
  PROBE_CORRELATION_ID,
  probeFrame,
  seededRandom,
} from "./frames.ts";

export type SavedCase = FuzzCase & { seed: number; index: number };
export type FailureKind = "hang" | "invariant" | "internal" | "uncaught" | "down" | "close";
export type FuzzFailure = { kind: FailureKind; detail: string; cases: SavedCase[] };

export type FuzzOptions = {
  frames: number;
  seed: number;
  /** Clients sending cases at once (default 8). */
  workers?: number;
  /** How long a case's probe may wait for its answer (default 10 s). */
  probeTimeoutMs?: number;
  /** Where to save each failing case as JSON; not saved when absent. */
  saveDir?: string;
};

export type FuzzReport = {
  frames: number;
  cases: number;
  elapsedMs: number;
  framesPerSecond: number;
  /** How cases ended: the probe answered, the server closed, or the stream was cut. */
  outcomes: Record<"answered" | "closed" | "cut", number>;
  failures: FuzzFailure[];
  saved: string[];
};

type Outcome = "answered" | "closed" | "cut" | "hang";

/** Mixes the run's seed and a case's index into that case's own seed. */
export function caseSeed(seed: number, index: number): number {
  return (Math.imul(seed ^ 0x9e37_79b9, 0x85eb_ca6b) + Math.imul(index, 0xc2b2_ae35)) >>> 0;
}

export function caseAt(seed: number, index: number): SavedCase {
  return { ...makeCase(seededRandom(caseSeed(seed, index))), seed, index };
}

/** A fuzz target: a server with the fuzz topic, short waits, and its problems collected. */
export type FuzzServer = {
  server: SluiceServer;
  port: number;
  problems: { kind: FailureKind; detail: string }[];
} & AsyncDisposable;

/** Memory-backed where there is one: the fuzz server's fsyncs (acks -1) then cost nothing. */
function scratchRoot(): string {
  return fs.existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
}

export async function startFuzzServer(): Promise<FuzzServer> {
  const dir = fs.mkdtempSync(join(scratchRoot(), "sluice-fuzz-"));
  const problems: FuzzServer["problems"] = [];
  const server = await SluiceServer.start({
    dataDir: dir,
    port: 0,
    // Long polls, sessions and stuck frames end quickly, so every probe is answered soon.
    limits: { fetchWaitMsMax: 5, requestTimeoutMs: 5_000, frameReadTimeoutMs: 2_000 },
    sessionTimeoutMs: 2_000,
    heartbeatIntervalMs: 100,
    // Nothing here needs to survive a power loss: no fsync slows the cases down.
    engineOptions: { topicDefaults: { fsync: "never" }, offsetsFsync: false, onWarning: () => {} },
    log: (line) => {
      // An exception escaping a connection, or a request answered UNKNOWN_SERVER_ERROR (no
      // disk fails here, so one would be a bug).
      if (line.includes("internal error") || /^request \d+\/\d+ failed/.test(line)) {
        problems.push({ kind: "internal", detail: line });
      }
    },
    onFatal: (error) => problems.push({ kind: "invariant", detail: error.message }),
  });
  await server.engine.createTopic(FUZZ_TOPIC, { partitions: FUZZ_PARTITIONS });
  // One of the names cases create and delete exists from the start, so a delete finds it.
  await server.engine.createTopic(`${FUZZ_TOPIC}-tmp-0`);
  const onUncaught = (error: unknown) =>
    problems.push({ kind: "uncaught", detail: String((error as Error)?.stack ?? error) });
  process.on("uncaughtException", onUncaught);
  process.on("unhandledRejection", onUncaught);
  return {
    server,
    port: server.port,
    problems,
    async [Symbol.asyncDispose]() {
      process.off("uncaughtException", onUncaught);
      process.off("unhandledRejection", onUncaught);
      try {
        await server.close(1_000);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** Splits received bytes into frames; true once the probe's answer is among them. */
class ProbeWatcher {
  #pending = new Uint8Array(0);
  answered = false;

  push(chunk: Uint8Array): void {
    const joined = new Uint8Array(this.#pending.length + chunk.length);
    joined.set(this.#pending);
    joined.set(chunk, this.#pending.length);
    let at = 0;
    while (joined.length - at >= 8) {
      const view = new DataView(joined.buffer, at);
      const size = view.getUint32(0);
      if (joined.length - at - 4 < size) break;
      if (size >= 4 && view.getUint32(4) === PROBE_CORRELATION_ID) this.answered = true;
      at += 4 + size;
    }
    this.#pending = joined.slice(at);
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const joined = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    joined.set(part, at);
    at += part.length;
  }
  return joined;
}

/** Sends one case on a fresh connection and waits for its probe's answer or a close. */
export function sendCase(
  port: number,
  fuzzCase: FuzzCase,
  probeTimeoutMs: number,
): Promise<Outcome> {
  const parts = [
    ...(fuzzCase.handshake ? [handshakeFrame()] : []),
    ...fuzzCase.frames,
    ...(fuzzCase.cut ? [] : [probeFrame()]),
  ];
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    const watcher = new ProbeWatcher();
    let settled = false;
    const finish = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    // tidy: allow-timeout a probe that is never answered is the hang this fuzzer looks for
    const timer = setTimeout(() => finish("hang"), probeTimeoutMs);
    socket.setNoDelay(true);
    socket.on("connect", () => {
      // One write: separate small writes would wait on each other's acknowledgement (Nagle).
      socket.write(concat(parts));
      if (fuzzCase.cut) finish("cut");
    });
    socket.on("data", (chunk: Uint8Array) => {
      watcher.push(chunk);
      if (watcher.answered) finish("answered");
    });
    socket.on("close", () => finish("closed"));
    socket.on("error", () => finish("closed"));
  });
}

/** Runs cases until `frames` fuzzed frames have been sent; returns what happened. */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const { frames: framesWanted, seed, workers = 8, probeTimeoutMs = 10_000 } = options;
  const report: FuzzReport = {
    frames: 0,
    cases: 0,
    elapsedMs: 0,
    framesPerSecond: 0,
    outcomes: { answered: 0, closed: 0, cut: 0 },
    failures: [],
    saved: [],
  };
  const inFlight = new Set<SavedCase>();
  const startedMs = performance.now();
  const target = await startFuzzServer();
  try {
    let next = 0;
    let seenProblems = 0;
    const worker = async () => {
      while (report.frames < framesWanted && report.failures.length === 0) {
        const fuzzCase = caseAt(seed, next++);
        report.frames += fuzzCase.frames.length;
        report.cases++;
        inFlight.add(fuzzCase);
        const outcome = await sendCase(target.port, fuzzCase, probeTimeoutMs);
        if (outcome === "hang") {
          report.failures.push({ kind: "hang", detail: "no answer, no close", cases: [fuzzCase] });
        } else {
          report.outcomes[outcome]++;
        }
        if (target.problems.length > seenProblems) {
          const problem = target.problems[seenProblems]!;
          seenProblems = target.problems.length;
          report.failures.push({ ...problem, cases: [...inFlight] });
        }
        inFlight.delete(fuzzCase);
      }
    };
    await Promise.all(Array.from({ length: workers }, worker));
    if (
      report.failures.length === 0 &&
      (await probeAlone(target.port, probeTimeoutMs)) !== "answered"
    ) {
      report.failures.push({
        kind: "down",
        detail: "a fresh connection was not served",
        cases: [],
      });
    }
  } finally {
    const closeFailure = await closeFailed(target);
    // Which cases left the server unable to close is unknown: every case run may have.
    if (closeFailure !== undefined && report.failures.length === 0) {
      report.failures.push({ ...closeFailure, cases: [] });
    }
  }
  report.elapsedMs = performance.now() - startedMs;
  report.framesPerSecond = report.frames / (report.elapsedMs / 1000);
  for (const failure of report.failures) {
    failure.cases = await culprits(failure, probeTimeoutMs);
    if (options.saveDir !== undefined) report.saved.push(...saveCases(options.saveDir, failure));
  }
  return report;
}

function probeAlone(port: number, probeTimeoutMs: number): Promise<Outcome> {
  return sendCase(port, { handshake: true, frames: [], cut: false, notes: [] }, probeTimeoutMs);
}

/** Closes the fuzz server; a close that throws (the engine could not shut down) is a failure. */
async function closeFailed(
  target: FuzzServer,
): Promise<{ kind: FailureKind; detail: string } | undefined> {
  try {
    await target[Symbol.asyncDispose]();
    return undefined;
  } catch (error) {
    return { kind: "close", detail: String((error as Error)?.stack ?? error) };
  }
}

/** The cases that cause `failure` when replayed alone on a fresh server (all, if none does). */
async function culprits(failure: FuzzFailure, probeTimeoutMs: number): Promise<SavedCase[]> {
  if (failure.cases.length <= 1) return failure.cases;
  const found: SavedCase[] = [];
  for (const fuzzCase of failure.cases) {
    if ((await replay(fuzzCase, probeTimeoutMs)) !== undefined) found.push(fuzzCase);
  }
  return found.length > 0 ? found : failure.cases;
}

/** Replays one case on a fresh server: the failure it causes, or undefined when none. */
export async function replay(
  fuzzCase: FuzzCase,
  probeTimeoutMs = 10_000,
): Promise<{ kind: FailureKind; detail: string } | undefined> {
  const target = await startFuzzServer();
  let failure: { kind: FailureKind; detail: string } | undefined;
  try {
    const outcome = await sendCase(target.port, fuzzCase, probeTimeoutMs);
    if (outcome === "hang") failure = { kind: "hang", detail: "no answer, no close" };
    else if ((await probeAlone(target.port, probeTimeoutMs)) !== "answered") {
      failure = { kind: "down", detail: "a fresh connection was not served" };
    }
    failure = target.problems[0] ?? failure;
  } finally {
    failure ??= await closeFailed(target);
  }
  return failure;
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export function fromHex(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++)
    bytes[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}

/** The JSON form of a saved case: frames as hex, what failed, and how it was found. */
export type CaseFile = {
  failure: string;
  seed: number;
  index: number;
  handshake: boolean;
  cut: boolean;
  notes: string[];
  frames: string[];
};

export function readCaseFile(path: string): FuzzCase & { failure: string } {
  const file = JSON.parse(fs.readFileSync(path, "utf8")) as CaseFile;
  return {
    failure: file.failure,
    handshake: file.handshake,
    cut: file.cut,
    notes: file.notes,
    frames: file.frames.map(fromHex),
  };
}

function saveCases(dir: string, failure: FuzzFailure): string[] {
  fs.mkdirSync(dir, { recursive: true });
  return failure.cases.map((fuzzCase) => {
    const file: CaseFile = {
      failure: `${failure.kind}: ${failure.detail.split("\n")[0]}`,
      seed: fuzzCase.seed,
      index: fuzzCase.index,
      handshake: fuzzCase.handshake,
      cut: fuzzCase.cut,
      notes: fuzzCase.notes,
      frames: fuzzCase.frames.map(toHex),
    };
    const path = join(dir, `${failure.kind}-seed${fuzzCase.seed}-case${fuzzCase.index}.json`);
    fs.writeFileSync(path, `${JSON.stringify(file, null, 2)}\n`);
    return path;
  });
}
