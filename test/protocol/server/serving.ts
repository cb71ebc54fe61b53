// Shared by the server tests: a server on port 0 in a temp directory that closes itself, a
// check that it still serves a well-behaved client, and hand-made frames.

import assert from "node:assert/strict";
import { readMsgpack, writeMsgpack } from "../../../protocol/codec/control.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { type ServerOptions, SluiceServer } from "../../../protocol/server/mod.ts";
import { tempDir } from "../../helpers.ts";
import { RawClient } from "./raw_client.ts";

export type TestServer = {
  server: SluiceServer;
  port: number;
  /** What the server logged (closed connections, refused requests). */
  logs: string[];
  dataDir: string;
} & AsyncDisposable;

/** A server on port 0 in a fresh directory; disposing it closes it and removes the directory. */
export async function startTestServer(
  options: Omit<ServerOptions, "dataDir" | "port"> = {},
): Promise<TestServer> {
  const dir = tempDir();
  const logs: string[] = [];
  const server = await SluiceServer.start({
    log: (message) => logs.push(message),
    engineOptions: { onWarning: () => {} },
    ...options,
    dataDir: dir.path,
    port: 0,
  });
  return {
    server,
    port: server.port,
    logs,
    dataDir: dir.path,
    async [Symbol.asyncDispose]() {
      try {
        await server.close();
      } finally {
        dir[Symbol.dispose]();
      }
    },
  };
}

/** A handshaken raw client that closes itself. */
export async function connected(port: number, handshake = true): Promise<RawClient & Disposable> {
  const client = await RawClient.connect(port);
  if (handshake) await client.handshake();
  return Object.assign(client, { [Symbol.dispose]: () => client.close() });
}

/** A well-behaved client proves the server still serves: a Stats round trip. */
export async function assertServing(port: number): Promise<void> {
  using client = await connected(port);
  const id = client.request(API.Stats, (w) => writeMsgpack(w, {}));
  const { errorCode, reader } = await client.response(id);
  assert.equal(errorCode, 0);
  assert.equal(typeof readMsgpack(reader, "stats")["uptimeMs"], "number");
}

/** A frame's size prefix followed by `payload` (which may be shorter than `size` says). */
export function frameWithSize(size: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const bytes = new Uint8Array(4 + payload.length);
  new DataView(bytes.buffer).setUint32(0, size);
  bytes.set(payload, 4);
  return bytes;
}
