// The load worker's side of the protocol (./protocol.ts): a TCP server that serves one
// coordinator session at a time. It checks the coordinator's proof of the shared token before
// anything else, makes its own driver instance (its own clients, its own connections), and runs
// a WorkerSession on the coordinator's commands.
//
// A local worker (spawned by the coordinator) serves one session and exits when it ends, also
// when the coordinator's connection drops: a worker never outlives its run. A remote worker
// (`sluice bench worker --listen`) serves sessions one after the other until it is stopped.

import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import { join } from "node:path";
import { type Driver, DriverUnavailableError } from "../driver.ts";
import { createDriver } from "../drivers/mod.ts";
import type { SetupReply, SetupRequest, SubscriptionSpec, TopicSpec } from "./messages.ts";
import {
  epochNowMs,
  FRAME_BYTES_MAX,
  FrameDecoder,
  type Message,
  newNonce,
  PREAUTH_FRAME_BYTES_MAX,
  PROTOCOL_VERSION,
  proofMatches,
  sendFrame,
} from "./protocol.ts";
import { type ClientPlan, WorkerSession } from "./session.ts";

/** A worker that serves one session stops if no coordinator claimed it within this long. */
const ONCE_CLAIM_TIMEOUT_MS = 60_000;

/** How long a refused or finished connection may take to flush before it is destroyed. */
const HANG_UP_MS = 1_000;

/** Closing clients, deleting topics and closing the driver each get at most this long. */
export const WORKER_CLOSE_TIMEOUT_MS = 15_000;

export type WorkerServerOptions = {
  host: string;
  port: number;
  token: string;
  /** Serve one session, then stop (a local worker). */
  once?: boolean;
  /** Where the driver's working directories go (default the OS temp directory). */
  tmpDir?: string;
  log?: (line: string) => void;
};

export type WorkerServer = {
  host: string;
  port: number;
  /** Resolves when the server stopped (after its one session, with `once`). */
  stopped: Promise<void>;
  stop(): Promise<void>;
};

function runtimeName(): string {
  const versions = process.versions as Record<string, string | undefined>;
  if (versions["bun"] !== undefined) return `bun ${versions["bun"]}`;
  if (versions["deno"] !== undefined) return `deno ${versions["deno"]}`;
  return `node ${process.versions.node}`;
}

export async function startWorkerServer(options: WorkerServerOptions): Promise<WorkerServer> {
  if (options.token.length === 0) throw new RangeError("a worker needs a non-empty token");
  const log = options.log ?? ((line: string) => console.error(line));
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((resolve) => {
    resolveStopped = resolve;
  });
  const sockets = new Set<net.Socket>();
  // One authenticated session at a time; a stranger without the token holds nothing.
  const sessions: SessionSlot = { busy: false };
  const server = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    const connection = new WorkerConnection(socket, options.token, sessions, log);
    connection.tmpDir = options.tmpDir ?? os.tmpdir();
    connection.ended.then(() => {
      if (options.once && connection.authenticated) server.close(() => resolveStopped());
    });
  });
  // A spawned worker whose coordinator never comes (it died first) does not linger.
  const unclaimed = options.once
    ? setTimeout(() => {
        if (!sessions.busy) server.close(() => resolveStopped());
      }, ONCE_CLAIM_TIMEOUT_MS)
    : undefined;
  server.on("close", () => clearTimeout(unclaimed));
  server.on("close", () => resolveStopped());
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address() as net.AddressInfo;
  return {
    host: address.address,
    port: address.port,
    stopped,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // A session in progress ends with its connection (the session releases itself).
        for (const socket of sockets) socket.destroy();
      }),
  };
}

/** Whether a coordinator's session holds this worker. */
type SessionSlot = { busy: boolean };

/** One coordinator session: authentication, then commands answered in order. */
class WorkerConnection {
  readonly ended: Promise<void>;
  readonly #slot: SessionSlot;
  readonly #socket: net.Socket;
  readonly #token: string;
  readonly #log: (line: string) => void;
  readonly #nonce = newNonce();
  readonly #decoder = new FrameDecoder(PREAUTH_FRAME_BYTES_MAX);
  #authenticated = false;
  #queue: Promise<void> = Promise.resolve();
  #clockOffsetMs = 0;
  #driver: Driver | undefined;
  #workDir: string | undefined;
  #setup: SetupRequest | undefined;
  #session: WorkerSession | undefined;
  #closed = false;
  tmpDir = os.tmpdir();

  constructor(socket: net.Socket, token: string, slot: SessionSlot, log: (line: string) => void) {
    this.#slot = slot;
    this.#socket = socket;
    this.#token = token;
    this.#log = log;
    socket.setNoDelay(true);
    sendFrame(socket, {
      type: "challenge",
      nonce: this.#nonce,
      version: PROTOCOL_VERSION,
      pid: process.pid,
      host: os.hostname(),
      runtime: runtimeName(),
      cores: os.cpus().length,
    });
    this.ended = new Promise<void>((resolve) => {
      socket.on("close", () => {
        // The coordinator went away without closing: release what this session holds.
        this.#queue = this.#queue
          .then(async () => {
            if (!this.#authenticated) return;
            await this.#release();
            this.#slot.busy = false;
          })
          .then(
            () => resolve(),
            () => resolve(),
          );
      });
    });
    socket.on("error", () => {});
    socket.on("data", (chunk: Uint8Array) => this.#onData(chunk));
  }

  #onData(chunk: Uint8Array): void {
    let messages: Message[];
    try {
      messages = this.#decoder.push(chunk);
    } catch (error) {
      this.#log(`sluice bench worker: closing a connection: ${(error as Error).message}`);
      this.#socket.destroy();
      return;
    }
    for (const message of messages) {
      this.#queue = this.#queue.then(() => this.#handle(message));
    }
  }

  async #handle(message: Message): Promise<void> {
    const id = message["id"];
    if (!this.#authenticated) return this.#hello(message);
    try {
      const reply = await this.#dispatch(message);
      sendFrame(this.#socket, { id, ok: true, ...reply });
    } catch (error) {
      const reply: Message = { id, ok: false, error: (error as Error).message };
      if (error instanceof DriverUnavailableError) {
        reply["unavailable"] = true;
        reply["hint"] = error.hint;
      }
      sendFrame(this.#socket, reply);
    }
    if (message["type"] === "close") hangUp(this.#socket);
  }

  #hello(message: Message): void {
    const id = message["id"];
    const refusal = this.#refusal(message);
    if (refusal !== undefined) {
      sendFrame(this.#socket, { id, ok: false, error: refusal });
      hangUp(this.#socket);
      return;
    }
    this.#authenticated = true;
    this.#slot.busy = true;
    this.#decoder.bytesMax = FRAME_BYTES_MAX;
    sendFrame(this.#socket, { id, ok: true });
  }

  get authenticated(): boolean {
    return this.#authenticated;
  }

  /** Why a hello is refused, or undefined when it proves the token. */
  #refusal(message: Message): string | undefined {
    if (message["type"] !== "hello") return "the first request must be hello";
    if (message["version"] !== PROTOCOL_VERSION) {
      return `protocol version ${String(message["version"])} is not ${PROTOCOL_VERSION}`;
    }
    if (!proofMatches(this.#token, this.#nonce, message["proof"])) {
      this.#log("sluice bench worker: refused a coordinator with the wrong token");
      return "refused: the token does not match this worker's";
    }
    if (this.#slot.busy) return "busy: this worker serves another coordinator";
    return undefined;
  }

  #now = (): number => epochNowMs() - this.#clockOffsetMs;

  async #dispatch(message: Message): Promise<Message> {
    switch (message["type"]) {
      case "clock":
        return { nowMs: epochNowMs() };
      case "setup":
        return await this.#setupDriver(message as unknown as SetupRequest);
      case "clients":
        return await this.#clients(message["plan"] as ClientPlan);
      case "start":
        // A worker without producers starts nothing: its share of the rate is 0.
        this.#sessionOrThrow().start(rateOf(message, this.#sessionOrThrow().producerCount === 0));
        return {};
      case "rate":
        this.#sessionOrThrow().setRate(rateOf(message));
        return {};
      case "stop":
        this.#sessionOrThrow().stop();
        return {};
      case "report":
        return { report: this.#sessionOrThrow().report() };
      case "close":
        return { problems: await this.#release() };
      default:
        throw new RangeError(`unknown request type ${JSON.stringify(message["type"])}`);
    }
  }

  async #setupDriver(request: SetupRequest): Promise<SetupReply> {
    if (this.#driver !== undefined) throw new Error("setup was already done");
    this.#setup = request;
    this.#clockOffsetMs = request.clockOffsetMs;
    this.#workDir = fs.mkdtempSync(join(this.tmpDir, `sluice-bench-worker-${request.driver}-`));
    const driver = await createDriver(request.driver, {
      workDir: this.#workDir,
      options: request.options,
      ...(request.ackMode === undefined ? {} : { ackMode: request.ackMode }),
      ...(request.priorityLevels === undefined ? {} : { priorityLevels: request.priorityLevels }),
      ...(request.deliveryDelayMsMax === undefined
        ? {}
        : { deliveryDelayMsMax: request.deliveryDelayMsMax }),
    });
    this.#driver = driver;
    await driver.initialize();
    await prepareTopics(driver, request.topics, request.subscriptions, request.ownsTopics);
    return {
      settings: driver.settings(),
      durability: driver.durability(),
      brokerProcess: driver.brokerProcess?.() ?? null,
    };
  }

  async #clients(plan: ClientPlan): Promise<Message> {
    if (this.#driver === undefined) throw new Error("clients before setup");
    this.#session = new WorkerSession(this.#driver, plan, this.#now);
    await this.#session.createClients();
    return { producers: this.#session.producerCount };
  }

  #sessionOrThrow(): WorkerSession {
    if (this.#session === undefined) throw new Error("no clients yet");
    return this.#session;
  }

  /** Closes clients, the topics it owns, the driver; removes its directory. Runs once. */
  async #release(): Promise<string[]> {
    if (this.#closed) return [];
    this.#closed = true;
    const problems = (await this.#session?.closeClients(WORKER_CLOSE_TIMEOUT_MS)) ?? [];
    const driver = this.#driver;
    const setup = this.#setup;
    if (driver !== undefined && setup?.ownsTopics === true) {
      for (const topic of setup.topics) {
        await attempt(() => driver.deleteTopic(topic.name), `deleting ${topic.name}`, problems);
      }
    }
    if (driver !== undefined) await attempt(() => driver.close(), "closing the driver", problems);
    if (this.#workDir !== undefined) fs.rmSync(this.#workDir, { recursive: true, force: true });
    return problems;
  }
}

/** Ends a connection once what was written is flushed (the peer need not close its side). */
function hangUp(socket: net.Socket): void {
  socket.end();
  const timer = setTimeout(() => socket.destroy(), HANG_UP_MS);
  socket.once("close", () => clearTimeout(timer));
}

function rateOf(message: Message, zeroAllowed = false): number {
  const rate = message["ratePerSecond"];
  const ok =
    typeof rate === "number" && Number.isFinite(rate) && (rate > 0 || (zeroAllowed && rate === 0));
  if (!ok) throw new RangeError(`ratePerSecond ${String(rate)} must be a positive number`);
  return rate;
}

async function prepareTopics(
  driver: Driver,
  topics: TopicSpec[],
  subscriptions: SubscriptionSpec[],
  owns: boolean,
): Promise<void> {
  for (const topic of topics) {
    if (owns) await driver.createTopic(topic.name, topic.partitions);
    else await driver.attachTopic?.(topic.name, topic.partitions);
  }
  if (!owns) return;
  for (const subscription of subscriptions) {
    await driver.createSubscription?.(subscription.topic, subscription.name);
  }
}

async function attempt(work: () => Promise<void>, what: string, problems: string[]) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`took longer than ${WORKER_CLOSE_TIMEOUT_MS} ms`)),
      WORKER_CLOSE_TIMEOUT_MS,
    );
  });
  try {
    await Promise.race([work(), deadline]);
  } catch (error) {
    problems.push(`${what} failed: ${(error as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
}
