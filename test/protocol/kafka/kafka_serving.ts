// Helpers for the Kafka listener's tests: a server with the Kafka listener on a free port in a
// temp dir, and a raw Kafka client that writes request frames and reads answer frames.

import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  codecFor,
  concatChunks,
  KafkaReader,
  KafkaWriter,
  MESSAGES,
  type Struct,
  type VersionCaps,
} from "../../../protocol/kafka/mod.ts";
import { type KafkaOptions, type ServerOptions, SluiceServer } from "../../../protocol/mod.ts";

export type KafkaTestServer = {
  server: SluiceServer;
  port: number;
  broker: string;
  dataDir: string;
  /** Closes the server; the data dir stays until dispose. */
  stop(): Promise<void>;
  /** Starts a server again on the same data dir (a restart). */
  restart(): Promise<KafkaTestServer>;
} & AsyncDisposable;

export async function startKafkaServer(
  options: {
    dataDir?: string;
    caps?: VersionCaps;
    server?: Partial<ServerOptions>;
    kafka?: Partial<KafkaOptions>;
  } = {},
): Promise<KafkaTestServer> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "sluice-kafka-"));
  const server = await SluiceServer.start({
    dataDir,
    port: 0,
    log: process.env["SLUICE_TEST_LOG"] === undefined ? () => {} : (m) => console.error(m),
    ...options.server,
    kafka: {
      port: 0,
      initialRebalanceDelayMs: 50,
      ...(options.caps === undefined ? {} : { versionCaps: options.caps }),
      ...options.kafka,
    },
  });
  const port = server.kafka!.port;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await server.close(1_000);
  };
  return {
    server,
    port,
    broker: `127.0.0.1:${port}`,
    dataDir,
    stop,
    restart: async () => {
      await stop();
      return startKafkaServer({ ...options, dataDir });
    },
    async [Symbol.asyncDispose]() {
      await stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A raw Kafka connection: frames out, whole answer frames in, in order. */
export class RawKafka {
  #socket: net.Socket;
  #buffer = new Uint8Array(0);
  #waiters: ((frame: Uint8Array) => void)[] = [];
  #frames: Uint8Array[] = [];
  #correlationId = 0;
  closed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on("data", (bytes: Uint8Array) => this.#data(bytes));
    this.closed = new Promise((resolve) => socket.on("close", () => resolve()));
    socket.on("error", () => {});
  }

  static connect(port: number): Promise<RawKafka> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, "127.0.0.1", () => resolve(new RawKafka(socket)));
      socket.once("error", reject);
    });
  }

  /** A TLS connection (`ca` trusted; `cert`/`key` for mutual TLS). */
  static connectTls(port: number, options: tls.ConnectionOptions): Promise<RawKafka> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ port, host: "127.0.0.1", servername: "localhost", ...options });
      socket.once("secureConnect", () => resolve(new RawKafka(socket)));
      socket.once("error", reject);
    });
  }

  #data(bytes: Uint8Array): void {
    const joined = new Uint8Array(this.#buffer.length + bytes.length);
    joined.set(this.#buffer);
    joined.set(bytes, this.#buffer.length);
    this.#buffer = joined;
    while (this.#buffer.length >= 4) {
      const size = new DataView(this.#buffer.buffer, this.#buffer.byteOffset).getInt32(0);
      if (this.#buffer.length < 4 + size) break;
      const frame = this.#buffer.slice(4, 4 + size);
      this.#buffer = this.#buffer.slice(4 + size);
      const waiter = this.#waiters.shift();
      if (waiter === undefined) this.#frames.push(frame);
      else waiter(frame);
    }
  }

  /** The next answer frame (without its size prefix). */
  next(): Promise<Uint8Array> {
    const frame = this.#frames.shift();
    if (frame !== undefined) return Promise.resolve(frame);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  send(bytes: Uint8Array): void {
    this.#socket.write(bytes);
  }

  /** Stops reading the socket (answers pile up in the server's outbox) until `resume`. */
  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  /** Sends a request with a header for `version` (v2 in flexible versions); returns its id. */
  request(apiKey: number, version: number, body: Struct, clientId = "raw"): number {
    const message = MESSAGES.get(apiKey)!;
    const codec = codecFor(message, version);
    const writer = new KafkaWriter();
    const correlationId = ++this.#correlationId;
    writer.int32(0).int16(apiKey).int16(version).int32(correlationId).string(clientId, false);
    if (codec.flexible) writer.uvarint(0);
    codec.request.encode(writer, body);
    const frame = concatChunks(writer.finish());
    new DataView(frame.buffer).setInt32(0, frame.length - 4);
    this.send(frame);
    return correlationId;
  }

  /** Sends a request and decodes its answer (header v0, or v1 for flexible non-ApiVersions). */
  async call(apiKey: number, version: number, body: Struct): Promise<Struct> {
    const id = this.request(apiKey, version, body);
    const frame = await this.next();
    const reader = new KafkaReader(frame);
    const correlationId = reader.int32();
    if (correlationId !== id) throw new Error(`answer ${correlationId} to request ${id}`);
    const codec = codecFor(MESSAGES.get(apiKey)!, version);
    if (codec.flexible && apiKey !== 18) reader.uvarint();
    const answer = codec.response.decode(reader);
    if (reader.remaining !== 0) throw new Error(`${reader.remaining} bytes left after the answer`);
    return answer;
  }

  close(): void {
    this.#socket.destroy();
  }
}
