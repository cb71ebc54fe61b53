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

/** Closing clients, deleting topics and closing the driver each get at most this long. */
export const WORKER_CLOSE_TIMEOUT_MS = 15_000;

export type WorkerServerOptions = {
  host: string;
  port: number;
  token: string;
  /** Serve one session, then stop (a local worker). */
  once?: boolean;
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
  let busy = false;
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((resolve) => {
    resolveStopped = resolve;
  });
  const server = net.createServer({ noDelay: true }, (socket) => {
    if (busy) {
      sendFrame(socket, { type: "busy", error: "this worker serves another coordinator" });
      socket.end();
      return;
    }
    busy = true;
    const connection = new WorkerConnection(socket, options.token, log);
    connection.ended.then(() => {
      busy = false;
      if (options.once) server.close(() => resolveStopped());
    });
  });
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
      }),
  };
}

/** One coordinator session: authentication, then commands answered in order. */
class WorkerConnection {
  readonly ended: Promise<void>;
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

  constructor(socket: net.Socket, token: string, log: (line: string) => void) {
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
          .then(() => this.#release())
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
    if (message["type"] === "close") this.#socket.end();
  }

  #hello(message: Message): void {
    const id = message["id"];
    const refusal = this.#refusal(message);
    if (refusal !== undefined) {
      sendFrame(this.#socket, { id, ok: false, error: refusal });
      this.#socket.end();
      return;
    }
    this.#authenticated = true;
    this.#decoder.bytesMax = FRAME_BYTES_MAX;
    sendFrame(this.#socket, { id, ok: true });
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
        this.#sessionOrThrow().start(rateOf(message));
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
    this.#workDir = fs.mkdtempSync(join(os.tmpdir(), `sluice-bench-worker-${request.driver}-`));
    const driver = await createDriver(request.driver, {
      workDir: this.#workDir,
      options: request.options,
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

function rateOf(message: Message): number {
  const rate = message["ratePerSecond"];
  if (typeof rate !== "number" || !Number.isFinite(rate) || rate <= 0) {
    throw new RangeError(`ratePerSecond ${String(rate)} must be a positive number`);
  }
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
