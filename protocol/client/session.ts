// The connection an Admin, Producer or Consumer talks through: opened on first use, replaced
// by a new one when it has closed. It never retries a request itself (only the caller knows
// whether a request may be repeated); it only makes sure the next request finds a live socket.

import type { Reader, Writer } from "../codec/wire.ts";
import {
  ClientConnection,
  type ClientConnectionOptions,
  type RequestOptions,
} from "./connection.ts";
import { ClientError } from "./errors.ts";

export const HOST_DEFAULT = "127.0.0.1";
export const PORT_DEFAULT = 7450;
export const RETRY_BACKOFF_MS_DEFAULT = 100;
export const RETRY_BACKOFF_MS_MAX_DEFAULT = 1_000;

/** Where the server is and how to talk to it; every client object takes these. */
export type ClientOptions = ClientConnectionOptions & {
  host?: string;
  port?: number;
  /** The first wait before a retry; it doubles up to retryBackoffMsMax. */
  retryBackoffMs?: number;
  retryBackoffMsMax?: number;
};

export class Session {
  readonly host: string;
  readonly port: number;
  readonly retryBackoffMs: number;
  readonly retryBackoffMsMax: number;
  #options: ClientConnectionOptions;
  #connection: ClientConnection | undefined;
  #connecting: Promise<ClientConnection> | undefined;
  #closed = false;

  constructor(options: ClientOptions = {}) {
    this.host = options.host ?? HOST_DEFAULT;
    this.port = options.port ?? PORT_DEFAULT;
    if (typeof this.host !== "string" || this.host.length === 0) {
      throw new TypeError(`host ${String(this.host)} must be a non-empty string`);
    }
    if (!Number.isInteger(this.port) || this.port < 1 || this.port > 65_535) {
      throw new RangeError(`port ${this.port} is not a TCP port`);
    }
    this.retryBackoffMs = nonNegative(
      "retryBackoffMs",
      options.retryBackoffMs,
      RETRY_BACKOFF_MS_DEFAULT,
    );
    this.retryBackoffMsMax = nonNegative(
      "retryBackoffMsMax",
      options.retryBackoffMsMax,
      RETRY_BACKOFF_MS_MAX_DEFAULT,
    );
    this.#options = options;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The live connection, or undefined when there is none right now. */
  get current(): ClientConnection | undefined {
    const connection = this.#connection;
    return connection !== undefined && !connection.closed ? connection : undefined;
  }

  /** The live connection, opening a new one when there is none. */
  connection(): Promise<ClientConnection> {
    if (this.#closed) return Promise.reject(new ClientError("CLOSED", "The client was closed"));
    const current = this.current;
    if (current !== undefined) return Promise.resolve(current);
    if (this.#connecting === undefined) {
      this.#connecting = ClientConnection.connect(this.host, this.port, this.#options).then(
        (connection) => {
          this.#connecting = undefined;
          if (this.#closed) {
            void connection.close();
            throw new ClientError("CLOSED", "The client was closed");
          }
          this.#connection = connection;
          return connection;
        },
        (error: unknown) => {
          this.#connecting = undefined;
          throw error;
        },
      );
    }
    return this.#connecting;
  }

  async request(
    apiKey: number,
    writeBody: (writer: Writer) => void,
    options?: RequestOptions,
  ): Promise<Reader> {
    const connection = await this.connection();
    return connection.request(apiKey, writeBody, options);
  }

  /** `request`, resolving with the response body as views (ClientConnection.requestChunks). */
  requestChunks(
    apiKey: number,
    writeBody: (writer: Writer) => void,
    options?: RequestOptions,
  ): Promise<Uint8Array[]> {
    // A live connection takes the request at once: no promise waits for the connection.
    const current = this.#closed ? undefined : this.current;
    if (current !== undefined) {
      try {
        return current.requestChunks(apiKey, writeBody, options);
      } catch (error) {
        // As from an async call: a failure is the promise's, never thrown at the caller.
        return Promise.reject(error);
      }
    }
    return this.#requestChunksWhenConnected(apiKey, writeBody, options);
  }

  /** requestChunks once connected; its closure here, so a live request makes no scope. */
  #requestChunksWhenConnected(
    apiKey: number,
    writeBody: (writer: Writer) => void,
    options?: RequestOptions,
  ): Promise<Uint8Array[]> {
    return this.connection().then((connection) =>
      connection.requestChunks(apiKey, writeBody, options),
    );
  }

  /** The wait before retry number `attempt` (1-based): exponential, capped. */
  backoffMs(attempt: number): number {
    const exponent = Math.min(Math.max(attempt - 1, 0), 20);
    return Math.min(this.retryBackoffMs * 2 ** exponent, this.retryBackoffMsMax);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const connecting = this.#connecting;
    if (connecting !== undefined) await connecting.catch(() => undefined);
    await this.#connection?.close();
  }
}

function nonNegative(name: string, value: number | undefined, fallback: number): number {
  const resolved = value ?? fallback;
  if (!Number.isSafeInteger(resolved) || resolved < 0) {
    throw new RangeError(`${name} ${resolved} is not a non-negative integer`);
  }
  return resolved;
}
