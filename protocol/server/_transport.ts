// The server's TCP transport behind one small interface: `Bun.listen` on Bun (unbuffered,
// non-blocking writes that return the bytes taken), `node:net` elsewhere (Deno). The
// connection logic above sees the same thing from both: `write` says how much was taken and
// whether to wait for `drain`; `pause`/`resume` stop and restart reading, so a client that
// sends faster than it reads meets TCP backpressure instead of unbounded server memory.

import net from "node:net";
import tls from "node:tls";
import type { TransportSocket } from "../codec/outbox.ts";
import { type TlsListen, tlsBunOptions, tlsNodeOptions } from "./_tls.ts";

export interface TransportHandlers {
  open(socket: TransportSocket): void;
  /**
   * `bytes` is only valid during the call, unless `socket.freshChunks`: copy what must
   * outlive it.
   */
  data(socket: TransportSocket, bytes: Uint8Array): void;
  drain(socket: TransportSocket): void;
  close(socket: TransportSocket): void;
}

export interface TransportServer {
  readonly port: number;
  readonly hostname: string;
  /** Stops accepting connections; open ones go on. */
  stopListening(): void;
  /** Stops accepting and closes every open connection at once. */
  stop(): void;
}

type BunSocket = {
  write(data: Uint8Array): number;
  pause(): void;
  resume(): void;
  end(): void;
  terminate(): void;
  setNoDelay?(noDelay: boolean): boolean;
  remoteAddress: string;
  data: TransportSocket;
};
type BunListen = (options: {
  hostname: string;
  port: number;
  tls?: Record<string, unknown>;
  socket: {
    handshake?(socket: BunSocket, success: boolean, error: Error | null): void;
    open(socket: BunSocket): void;
    data(socket: BunSocket, bytes: Uint8Array): void;
    drain(socket: BunSocket): void;
    close(socket: BunSocket): void;
    error?(socket: BunSocket, error: Error): void;
  };
}) => { port: number; hostname: string; stop(closeActive?: boolean): void };

const bunListen = (globalThis as { Bun?: { listen?: BunListen } }).Bun?.listen;

export type TransportKind = "bun" | "node";

export function defaultTransport(): TransportKind {
  return bunListen === undefined ? "node" : "bun";
}

/** With `secure`, the listener speaks TLS (_tls.ts) and reports each client's certificate. */
export function listen(
  host: string,
  port: number,
  handlers: TransportHandlers,
  kind: TransportKind = defaultTransport(),
  secure?: TlsListen,
): Promise<TransportServer> {
  if (kind === "bun") {
    if (bunListen === undefined) throw new TypeError("the bun transport needs the Bun runtime");
    return Promise.resolve(listenBun(bunListen, host, port, handlers, secure));
  }
  return listenNode(host, port, handlers, secure);
}

function listenBun(
  bun: BunListen,
  host: string,
  port: number,
  h: TransportHandlers,
  secure: TlsListen | undefined,
) {
  const server = bun({
    hostname: host,
    port,
    ...(secure === undefined ? {} : { tls: tlsBunOptions(secure) }),
    socket: {
      handshake: (socket, success, error) => {
        secure?.handshake(socket.data, socket, success, error);
      },
      open(socket) {
        socket.setNoDelay?.(true);
        socket.data = {
          write(bytes) {
            const taken = socket.write(bytes);
            if (taken < 0) return { taken: 0, blocked: true };
            return { taken, blocked: taken < bytes.length };
          },
          pause: () => socket.pause(),
          resume: () => socket.resume(),
          end: () => socket.end(),
          destroy: () => socket.terminate(),
          remoteAddress: socket.remoteAddress,
          // Bun hands each read a buffer of its own (receive_chunks.test.ts); not checked with TLS.
          freshChunks: secure === undefined,
          // Bun's sockets do not buffer: a write keeps nothing (write_copies.test.ts); not
          // checked with TLS.
          writeCopies: secure === undefined,
        };
        h.open(socket.data);
      },
      data: (socket, bytes) => h.data(socket.data, bytes),
      drain: (socket) => h.drain(socket.data),
      close: (socket) => h.close(socket.data),
      error: (socket) => h.close(socket.data),
    },
  });
  return {
    port: server.port,
    hostname: server.hostname,
    stopListening: () => server.stop(false),
    stop: () => server.stop(true),
  };
}

function listenNode(
  host: string,
  port: number,
  h: TransportHandlers,
  secure: TlsListen | undefined,
): Promise<TransportServer> {
  const sockets = new Set<net.Socket>();
  const accept = (socket: net.Socket) => {
    sockets.add(socket);
    const wrapped: TransportSocket = {
      write(bytes) {
        // node:net buffers what the kernel does not take; `false` asks the writer to wait.
        const ok = socket.write(bytes);
        return { taken: bytes.length, blocked: !ok };
      },
      pause: () => socket.pause(),
      resume: () => socket.resume(),
      end: () => socket.end(),
      destroy: () => socket.destroy(),
      remoteAddress: socket.remoteAddress ?? "unknown",
      // node:net (Deno, Node) hands each read a buffer of its own; not checked with TLS.
      freshChunks: secure === undefined,
    };
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      sockets.delete(socket);
      h.close(wrapped);
    };
    socket.on("data", (bytes: Uint8Array) => h.data(wrapped, bytes));
    socket.on("drain", () => h.drain(wrapped));
    socket.on("close", close);
    socket.on("error", close);
    h.open(wrapped);
    if (secure !== undefined) {
      const tlsSocket = socket as tls.TLSSocket;
      // "secureConnection" comes after a completed handshake; `authorized` speaks of the client
      // certificate, which only a listener with a CA asks for.
      const verified = tlsSocket.authorized || secure.ca === undefined;
      secure.handshake(wrapped, tlsSocket, verified, tlsSocket.authorizationError ?? null);
    }
  };
  const server =
    secure === undefined
      ? net.createServer({ noDelay: true }, accept)
      : tls
          .createServer({ ...tlsNodeOptions(secure), noDelay: true })
          .on("secureConnection", accept);
  if (secure !== undefined) {
    server.on("tlsClientError", (error: Error, socket: net.Socket) => {
      secure.failed(socket.remoteAddress ?? "unknown", error);
    });
  }
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const address = server.address() as net.AddressInfo;
      resolve({
        port: address.port,
        hostname: address.address,
        stopListening() {
          server.close();
        },
        stop() {
          server.close();
          for (const socket of sockets) socket.destroy();
        },
      });
    });
  });
}
