// A minimal raw-socket client for server tests: sends bytes, splits what comes back into
// frames, and lets a test wait on conditions (a frame arrived, the socket closed).

import net from "node:net";
import tls from "node:tls";
import {
  API,
  finishFrame,
  readResponseHeader,
  startRequest,
} from "../../../protocol/codec/frames.ts";
import { writeHandshakeRequest } from "../../../protocol/codec/handshake.ts";
import { Reader, type Writer } from "../../../protocol/codec/wire.ts";
import { waitFor } from "../../helpers.ts";

export class RawClient {
  readonly socket: net.Socket;
  readonly frames: Uint8Array[] = [];
  closed = false;
  #buffer = new Uint8Array(0);
  #correlationId = 1;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Uint8Array) => this.#receive(chunk));
    socket.on("close", () => {
      this.closed = true;
    });
    socket.on("error", () => {
      this.closed = true;
    });
  }

  static async connect(port: number): Promise<RawClient> {
    const socket = net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return new RawClient(socket);
  }

  /** A connection over TLS (the server's certificate checked against `options`). */
  static async connectTls(port: number, options: tls.ConnectionOptions): Promise<RawClient> {
    const socket = tls.connect({ port, host: "127.0.0.1", servername: "localhost", ...options });
    await new Promise<void>((resolve, reject) => {
      socket.once("secureConnect", resolve);
      socket.once("error", reject);
    });
    return new RawClient(socket);
  }

  #receive(chunk: Uint8Array): void {
    const joined = new Uint8Array(this.#buffer.length + chunk.length);
    joined.set(this.#buffer);
    joined.set(chunk, this.#buffer.length);
    let at = 0;
    while (joined.length - at >= 4) {
      const size = new DataView(joined.buffer, at, 4).getUint32(0);
      if (joined.length - at - 4 < size) break;
      this.frames.push(joined.slice(at + 4, at + 4 + size));
      at += 4 + size;
    }
    this.#buffer = joined.slice(at);
  }

  send(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** A request frame with the next correlation id, not sent (to send several in one write). */
  frame(apiKey: number, body: (writer: Writer) => void, apiVersion = 1): Uint8Array {
    const correlationId = this.#correlationId++;
    const writer = startRequest({ apiKey, apiVersion, correlationId });
    body(writer);
    return finishFrame(writer);
  }

  /** Sends a request and returns its correlation id. */
  request(apiKey: number, body: (writer: Writer) => void, apiVersion = 1): number {
    const correlationId = this.#correlationId;
    this.send(this.frame(apiKey, body, apiVersion));
    return correlationId;
  }

  /** Waits for the response to `correlationId`; returns its error code and a body reader. */
  async response(correlationId: number): Promise<{ errorCode: number; reader: Reader }> {
    const find = () =>
      this.frames.find((frame) => new DataView(frame.buffer).getUint32(0) === correlationId);
    await waitFor(() => find() !== undefined || this.closed, `response ${correlationId}`);
    const frame = find();
    if (frame === undefined) throw new Error(`connection closed before response ${correlationId}`);
    const reader = new Reader(frame);
    const { errorCode } = readResponseHeader(reader);
    return { errorCode, reader };
  }

  async handshake(): Promise<void> {
    const id = this.request(API.Handshake, (w) =>
      writeHandshakeRequest(w, { clientName: "raw", clientVersion: "0" }),
    );
    const { errorCode } = await this.response(id);
    if (errorCode !== 0) throw new Error(`handshake failed with ${errorCode}`);
  }

  async waitClosed(): Promise<void> {
    await waitFor(() => this.closed, "the server to close the connection");
  }

  close(): void {
    this.socket.destroy();
  }
}
