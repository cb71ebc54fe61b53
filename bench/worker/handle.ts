// The coordinator's handle on one load worker. A LoadWorker is either a process reached over
// the worker protocol (RemoteWorker: spawned here by spawnLocalWorker, or started on another
// machine with `sluice bench worker`), or the coordinator's own process (./in_process.ts).
//
// Every request has a deadline, and a worker that dies (its connection drops, its process
// exits) fails every pending and later request at once with a WorkerDiedError that says which
// worker, how it ended and what the run was doing: a run never waits on a dead worker.

import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { join } from "node:path";
import { DriverUnavailableError } from "../driver.ts";
import type { WorkerReport } from "../load_stats.ts";
import type { CloseReply, SetupReply, SetupRequest, WorkerIdentity } from "./messages.ts";
import {
  epochNowMs,
  FRAME_BYTES_MAX,
  FrameDecoder,
  type Message,
  PREAUTH_FRAME_BYTES_MAX,
  PROTOCOL_VERSION,
  proofOf,
  sendFrame,
  TMPDIR_ENV,
  TOKEN_ENV,
} from "./protocol.ts";
import type { ClientPlan } from "./session.ts";

/** How long a request may take before the worker counts as hung. */
export const REQUEST_TIMEOUT_MS = 10_000;
/** Setting up a driver or its clients (connections, group joins) may take this long. */
export const SETUP_TIMEOUT_MS = 120_000;
/** A spawned worker must say where it listens within this long. */
export const SPAWN_TIMEOUT_MS = 30_000;
/** Clock probes at connect; the one with the shortest round trip sets the offset. */
export const CLOCK_PROBES = 5;
/** After a connection drops, how long to wait for the process's exit status for the message. */
const EXIT_STATUS_WAIT_MS = 500;

const WORKER_SCRIPT = join(import.meta.dirname, "main.ts");

/** A worker died or stopped answering; the run fails with this message. */
export class WorkerDiedError extends Error {
  override name = "WorkerDiedError";
}

export interface LoadWorker {
  /** "worker 1 (pid 4242 on host, bun 1.4.5)". */
  readonly label: string;
  /** The worker's process id (on its own machine). */
  readonly pid: number;
  /** Worker clock − coordinator clock, ms, as measured at connect. */
  readonly clockOffsetMs: number;
  setup(request: Omit<SetupRequest, "clockOffsetMs">): Promise<SetupReply>;
  clients(plan: ClientPlan): Promise<void>;
  start(ratePerSecond: number): Promise<void>;
  setRate(ratePerSecond: number): Promise<void>;
  stop(): Promise<void>;
  report(): Promise<WorkerReport>;
  /** Ends the session: clients closed, the worker's driver closed; returns what failed. */
  close(): Promise<string[]>;
  /** Rejects with a WorkerDiedError when the worker dies before close(). */
  readonly died: Promise<never>;
  /** Ends the worker at once (a spawned process is killed). */
  kill(): void;
}

type Pending = {
  resolve: (message: Message) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
  what: string;
};

export class RemoteWorker implements LoadWorker {
  readonly label: string;
  readonly pid: number;
  readonly died: Promise<never>;
  clockOffsetMs = 0;
  /** What the run was doing, for the message when the worker dies. */
  activity = "connecting";
  readonly #socket: net.Socket;
  readonly #child: ChildProcess | undefined;
  readonly #decoder = new FrameDecoder(FRAME_BYTES_MAX);
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #closing = false;
  #death: WorkerDiedError | undefined;
  #rejectDied!: (error: WorkerDiedError) => void;

  private constructor(
    socket: net.Socket,
    identity: { label: string; pid: number },
    child: ChildProcess | undefined,
  ) {
    this.#socket = socket;
    this.label = identity.label;
    this.pid = identity.pid;
    this.#child = child;
    this.died = new Promise<never>((_, reject) => {
      this.#rejectDied = reject;
    });
    // Nobody may be listening yet: a death is also reported through the pending requests.
    this.died.catch(() => {});
    socket.on("data", (chunk: Uint8Array) => this.#onData(chunk));
    socket.on("error", () => {});
    socket.on("close", () => void this.#onClose());
  }

  /**
   * Connects to a worker, proves the token, and measures the clock offset. `label` names it in
   * messages; `child` is its process when this coordinator spawned it.
   */
  static async connect(options: {
    host: string;
    port: number;
    token: string;
    label: string;
    child?: ChildProcess;
  }): Promise<RemoteWorker> {
    const socket = net.connect({ host: options.host, port: options.port, noDelay: true });
    const where = `${options.host}:${options.port}`;
    const identity = await readChallenge(socket, where);
    const label = `${options.label} (pid ${identity.pid} on ${identity.host}, ${identity.runtime})`;
    const worker = new RemoteWorker(socket, { label, pid: identity.pid }, options.child);
    const reply = await worker
      .#request(
        "hello",
        { version: PROTOCOL_VERSION, proof: proofOf(options.token, identity.nonce) },
        REQUEST_TIMEOUT_MS,
      )
      .catch((error: Error) => {
        socket.destroy();
        throw new WorkerDiedError(`${label} at ${where}: ${error.message}`);
      });
    if (reply["ok"] !== true) {
      worker.kill();
      throw new WorkerDiedError(`${label}: ${String(reply["error"])}`);
    }
    await worker.#measureClock();
    return worker;
  }

  async #measureClock(): Promise<void> {
    let best = { roundTripMs: Number.POSITIVE_INFINITY, offsetMs: 0 };
    for (let probe = 0; probe < CLOCK_PROBES; probe++) {
      const sentMs = epochNowMs();
      const reply = await this.#call("clock", {}, REQUEST_TIMEOUT_MS);
      const receivedMs = epochNowMs();
      const roundTripMs = receivedMs - sentMs;
      if (roundTripMs < best.roundTripMs) {
        best = { roundTripMs, offsetMs: (reply["nowMs"] as number) - (sentMs + receivedMs) / 2 };
      }
    }
    this.clockOffsetMs = best.offsetMs;
  }

  async setup(request: Omit<SetupRequest, "clockOffsetMs">): Promise<SetupReply> {
    this.activity = "setting up its driver";
    const reply = await this.#call(
      "setup",
      { ...request, clockOffsetMs: this.clockOffsetMs },
      SETUP_TIMEOUT_MS,
    );
    return reply as unknown as SetupReply;
  }

  async clients(plan: ClientPlan): Promise<void> {
    this.activity = "creating its producers and consumers";
    await this.#call("clients", { plan }, SETUP_TIMEOUT_MS);
  }

  async start(ratePerSecond: number): Promise<void> {
    this.activity = "running the workload";
    await this.#call("start", { ratePerSecond }, REQUEST_TIMEOUT_MS);
  }

  async setRate(ratePerSecond: number): Promise<void> {
    await this.#call("rate", { ratePerSecond }, REQUEST_TIMEOUT_MS);
  }

  async stop(): Promise<void> {
    this.activity = "draining";
    await this.#call("stop", {}, REQUEST_TIMEOUT_MS);
  }

  async report(): Promise<WorkerReport> {
    const reply = await this.#call("report", {}, REQUEST_TIMEOUT_MS);
    return reply["report"] as WorkerReport;
  }

  async close(): Promise<string[]> {
    this.activity = "closing";
    this.#closing = true;
    try {
      const reply = await this.#call("close", {}, SETUP_TIMEOUT_MS);
      return (reply as unknown as CloseReply).problems;
    } finally {
      this.#socket.end();
      await this.#exited(SPAWN_TIMEOUT_MS);
    }
  }

  kill(): void {
    this.#closing = true;
    this.#socket.destroy();
    if (this.#child !== undefined && this.#child.exitCode === null) this.#child.kill("SIGKILL");
  }

  /** A request whose answer must be ok (an unavailable driver: DriverUnavailableError). */
  async #call(type: string, body: Message, timeoutMs: number): Promise<Message> {
    const reply = await this.#request(type, body, timeoutMs);
    if (reply["ok"] === true) return reply;
    const error = String(reply["error"]);
    if (reply["unavailable"] === true) {
      throw new DriverUnavailableError(error, String(reply["hint"] ?? ""));
    }
    throw new Error(`${this.label}: ${type} failed: ${error}`);
  }

  #request(type: string, body: Message, timeoutMs: number): Promise<Message> {
    if (this.#death !== undefined) return Promise.reject(this.#death);
    const id = this.#nextId++;
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        const error = new WorkerDiedError(
          `${this.label} did not answer ${type} within ${timeoutMs} ms while ${this.activity}`,
        );
        this.#die(error);
        reject(error);
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer, what: type });
      sendFrame(this.#socket, { id, type, ...body });
    });
  }

  #onData(chunk: Uint8Array): void {
    let messages: Message[];
    try {
      messages = this.#decoder.push(chunk);
    } catch (error) {
      this.#die(new WorkerDiedError(`${this.label} sent a bad frame: ${(error as Error).message}`));
      this.#socket.destroy();
      return;
    }
    for (const message of messages) {
      const pending = this.#pending.get(message["id"] as number);
      if (pending === undefined) continue;
      this.#pending.delete(message["id"] as number);
      clearTimeout(pending.timer);
      pending.resolve(message);
    }
  }

  async #onClose(): Promise<void> {
    if (this.#closing && this.#pending.size === 0) return;
    const status = await this.#exitStatus();
    this.#die(
      new WorkerDiedError(
        `${this.label} died while ${this.activity}: ${status}; the run stops here and its ` +
          "partial result is written",
      ),
    );
  }

  /** "exited with code 1", "killed by SIGKILL", or "its connection closed". */
  async #exitStatus(): Promise<string> {
    const child = this.#child;
    if (child === undefined) return "its connection closed";
    await this.#exited(EXIT_STATUS_WAIT_MS);
    if (child.signalCode !== null) return `killed by ${child.signalCode}`;
    if (child.exitCode !== null) return `exited with code ${child.exitCode}`;
    return "its connection closed (the process is still running)";
  }

  async #exited(timeoutMs: number): Promise<void> {
    const child = this.#child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      child.once("exit", () => resolve());
      timer = setTimeout(resolve, timeoutMs);
    });
    clearTimeout(timer);
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }

  #die(error: WorkerDiedError): void {
    if (this.#death !== undefined) return;
    this.#death = error;
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.#pending.clear();
    this.#rejectDied(error);
  }
}

/** Reads the worker's first frame (its challenge) before anything else is sent. */
function readChallenge(
  socket: net.Socket,
  where: string,
): Promise<WorkerIdentity & { nonce: string }> {
  const decoder = new FrameDecoder(PREAUTH_FRAME_BYTES_MAX);
  return new Promise((resolve, reject) => {
    const fail = (why: string) => {
      cleanup();
      socket.destroy();
      reject(new WorkerDiedError(`no load worker at ${where}: ${why}`));
    };
    const timer = setTimeout(
      () => fail(`no answer within ${REQUEST_TIMEOUT_MS} ms`),
      REQUEST_TIMEOUT_MS,
    );
    const onError = (error: Error) => fail(error.message);
    const onClose = () => fail("the connection closed");
    const onData = (chunk: Uint8Array) => {
      let messages: Message[];
      try {
        messages = decoder.push(chunk);
      } catch (error) {
        return fail((error as Error).message);
      }
      const first = messages[0];
      if (first === undefined) return;
      cleanup();
      if (first["type"] !== "challenge" || typeof first["nonce"] !== "string") {
        socket.destroy();
        reject(
          new WorkerDiedError(
            `${where} is not a free load worker: ${String(first["error"] ?? first["type"])}`,
          ),
        );
        return;
      }
      resolve(first as unknown as WorkerIdentity & { nonce: string });
    };
    const cleanup = () => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("error", onError);
      socket.off("close", onClose);
    };
    socket.on("data", onData);
    socket.on("error", onError);
    socket.on("close", onClose);
  });
}

const isDeno = (process.versions as Record<string, string | undefined>)["deno"] !== undefined;

/**
 * Spawns a worker process under the runtime running this coordinator, with a fresh token and
 * its working directories under `tmpDir`, and connects to it. Its stdout after the listening
 * line goes to this process's stderr.
 */
export async function spawnLocalWorker(index: number, tmpDir: string): Promise<RemoteWorker> {
  const token = randomBytes(32).toString("hex");
  const args = ["--listen", "127.0.0.1:0", "--once"];
  const argv = isDeno ? ["run", "-A", WORKER_SCRIPT, ...args] : [WORKER_SCRIPT, ...args];
  const child = spawn(process.execPath, argv, {
    env: { ...process.env, [TOKEN_ENV]: token, [TMPDIR_ENV]: tmpDir },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const label = `worker ${index + 1}`;
  const port = await new Promise<number>((resolve, reject) => {
    let output = "";
    let listening = false;
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new WorkerDiedError(`${label} did not start within ${SPAWN_TIMEOUT_MS} ms`));
    }, SPAWN_TIMEOUT_MS);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (!listening) {
        reject(new WorkerDiedError(`${label} exited (${signal ?? code}) before listening`));
      }
    });
    child.stdout!.on("data", (chunk: Uint8Array) => {
      const text = new TextDecoder().decode(chunk);
      if (listening) {
        process.stderr.write(text.replace(/^(?=.)/gm, `[${label}] `));
        return;
      }
      output += text;
      const match = /listening on [\d.]+:(\d+)/.exec(output);
      if (match === null) return;
      listening = true;
      clearTimeout(timer);
      resolve(Number(match[1]));
    });
  });
  try {
    return await RemoteWorker.connect({ host: "127.0.0.1", port, token, label, child });
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
}
