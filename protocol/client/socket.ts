// The client's TCP socket behind the interface an Outbox writes to (TransportSocket in
// ../codec/outbox.ts): `Bun.connect` on Bun, `node:net` elsewhere (Deno, Node). Why two: Bun's
// node:net copies into its own buffer every byte the kernel does not take at once, which for
// megabyte produce requests was a sixth of the producer's time; a Bun socket's `write` takes
// what the kernel takes and returns the count, and the caller keeps the rest as a view until
// `drain` (no copy).
//
//   openSocket ──► "bun": Bun.connect, unbuffered writes      ┐ same TransportSocket:
//              └─► "node": net.connect, node buffers the rest ┘ write → { taken, blocked }
//
// Received chunks are fresh buffers on both paths (neither runtime reuses them), so frames and
// record values may stay views of them.

import net from "node:net";
import tls from "node:tls";
import type { TransportSocket } from "../codec/outbox.ts";

/**
 * TLS to the server (PROTOCOL.md section 11.1): PEM text, not file names. Without `ca` the
 * runtime's trusted roots verify the server; `cert` and `key` present a client certificate
 * (mTLS); `servername` is the name the server's certificate must carry (default: the host).
 */
export type ClientTlsOptions = {
  ca?: string | string[];
  cert?: string;
  key?: string;
  servername?: string;
  /** false accepts any server certificate: for tests only, never in production. */
  rejectUnauthorized?: boolean;
};

function tlsFields(host: string, options: ClientTlsOptions): Record<string, unknown> {
  return {
    ...(options.ca === undefined ? {} : { ca: options.ca }),
    ...(options.cert === undefined ? {} : { cert: options.cert }),
    ...(options.key === undefined ? {} : { key: options.key }),
    servername: options.servername ?? host,
    rejectUnauthorized: options.rejectUnauthorized ?? true,
  };
}

export type ClientSocketKind = "bun" | "node";

export type ClientSocketHandlers = {
  /** A received chunk; it is never reused, so views of it stay valid. */
  data(bytes: Uint8Array): void;
  /** The socket takes writes again after a write reported `blocked`. */
  drain(): void;
  /** The socket closed, for whatever reason; called once. */
  close(error: Error | undefined): void;
};

export type ClientSocket = TransportSocket & {
  readonly kind: ClientSocketKind;
};

type BunSocket = {
  write(data: Uint8Array): number;
  end(): void;
  terminate(): void;
  pause?(): void;
  resume?(): void;
  setNoDelay?(noDelay: boolean): boolean;
  remoteAddress: string;
};
type BunSocketHandler = {
  open(socket: BunSocket): void;
  data(socket: BunSocket, bytes: Uint8Array): void;
  drain(socket: BunSocket): void;
  close(socket: BunSocket, error?: Error): void;
  end(socket: BunSocket): void;
  error(socket: BunSocket, error: Error): void;
  connectError(socket: BunSocket, error: Error): void;
  handshake?(socket: BunSocket, success: boolean, error: Error | null): void;
};
type BunConnect = (options: {
  hostname: string;
  port: number;
  tls?: Record<string, unknown>;
  socket: BunSocketHandler;
}) => Promise<BunSocket>;

const bunConnect = (globalThis as { Bun?: { connect?: BunConnect } }).Bun?.connect;

export function defaultSocketKind(): ClientSocketKind {
  return bunConnect === undefined ? "node" : "bun";
}

/** Throws a TypeError for a kind this runtime cannot open. */
export function checkSocketKind(kind: unknown): ClientSocketKind {
  if (kind !== "bun" && kind !== "node") {
    throw new TypeError(`transport ${String(kind)} must be "bun" or "node"`);
  }
  if (kind === "bun" && bunConnect === undefined) {
    throw new TypeError('transport "bun" needs the Bun runtime; use "node"');
  }
  return kind;
}

/**
 * Connects to `host:port`; resolves once connected, rejects with the connect error. After that,
 * every event goes to `handlers`, and `close` comes exactly once.
 */
export function openSocket(
  host: string,
  port: number,
  handlers: ClientSocketHandlers,
  kind: ClientSocketKind = defaultSocketKind(),
  secure?: ClientTlsOptions,
): Promise<ClientSocket> {
  if (kind === "bun") {
    if (bunConnect === undefined) throw new TypeError("the bun socket needs the Bun runtime");
    return openBun(bunConnect, host, port, handlers, secure);
  }
  return openNode(host, port, handlers, secure);
}

function openBun(
  connect: BunConnect,
  host: string,
  port: number,
  handlers: ClientSocketHandlers,
  secure: ClientTlsOptions | undefined,
): Promise<ClientSocket> {
  let closed = false;
  let failure: Error | undefined;
  const close = (error: Error | undefined) => {
    if (closed) return;
    closed = true;
    handlers.close(error ?? failure);
  };
  const wrap = (socket: BunSocket): ClientSocket => ({
    kind: "bun",
    write(bytes) {
      if (closed) return { taken: 0, blocked: true };
      const taken = socket.write(bytes);
      if (taken < 0) return { taken: 0, blocked: true };
      return { taken, blocked: taken < bytes.length };
    },
    pause: () => socket.pause?.(),
    resume: () => socket.resume?.(),
    end: () => socket.end(),
    destroy: () => {
      socket.terminate();
      close(undefined);
    },
    remoteAddress: socket.remoteAddress,
    // Bun's sockets do not buffer: a write keeps nothing (write_copies.test.ts); not checked
    // with TLS.
    writeCopies: secure === undefined,
  });
  // With TLS, connect resolves before the handshake; requests written meanwhile wait in the
  // TLS layer, and a failed handshake closes the socket with the verification error.
  return connect({
    hostname: host,
    port,
    ...(secure === undefined ? {} : { tls: tlsFields(host, secure) }),
    socket: {
      handshake: (socket, success, error) => {
        if (success || secure?.rejectUnauthorized === false) return;
        failure ??= error ?? new Error("TLS handshake failed");
        socket.terminate();
      },
      open: (socket) => void socket.setNoDelay?.(true),
      data: (_socket, bytes) => handlers.data(bytes),
      drain: () => handlers.drain(),
      close: (_socket, error) => close(error),
      // The server closed its side: nothing more will arrive, and requests cannot be answered.
      end: (socket) => {
        socket.end();
        close(undefined);
      },
      error: (_socket, error) => {
        failure ??= error;
      },
      connectError: (_socket, error) => {
        failure ??= error;
      },
    },
  }).then(wrap);
}

function openNode(
  host: string,
  port: number,
  handlers: ClientSocketHandlers,
  secure: ClientTlsOptions | undefined,
): Promise<ClientSocket> {
  const socket =
    secure === undefined
      ? net.connect({ host, port })
      : tls.connect({ host, port, minVersion: "TLSv1.2", ...tlsFields(host, secure) });
  socket.setNoDelay(true);
  let failure: Error | undefined;
  let connected = false;
  const wrapped: ClientSocket = {
    kind: "node",
    write(bytes) {
      // node:net buffers what the kernel does not take; `false` asks the writer to wait.
      return { taken: bytes.length, blocked: !socket.write(bytes) };
    },
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    end: () => socket.end(() => socket.destroy()),
    destroy: () => socket.destroy(),
    get remoteAddress() {
      return socket.remoteAddress ?? host;
    },
  };
  return new Promise((resolve, reject) => {
    socket.on("data", (chunk: Uint8Array) => handlers.data(chunk));
    socket.on("drain", () => handlers.drain());
    socket.on("error", (error: Error) => {
      failure ??= error;
    });
    socket.once(secure === undefined ? "connect" : "secureConnect", () => {
      connected = true;
      resolve(wrapped);
    });
    socket.once("close", () => {
      if (!connected) reject(failure ?? new Error(`connection to ${host}:${port} closed`));
      else handlers.close(failure);
    });
  });
}
