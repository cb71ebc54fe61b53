// A consumer closed while its group join is still unanswered must leave the group at once: the
// server made it a member when it read the join, so without a leave it would stay there until
// sessionTimeoutMs (45 s by default), holding partitions nobody reads.
//
// A relay between the consumer and the server holds back the server's answers on a connection
// from the moment that connection sends a GroupHeartbeat, so the test can close the consumer
// while the join is known to have reached the server (DescribeGroup shows the member) and its
// answer known not to have reached the client.

import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { Admin, Consumer } from "../../protocol/client/mod.ts";
import { SluiceServer } from "../../protocol/server/mod.ts";
import { tempDir, waitFor } from "../helpers.ts";

const API_GROUP_HEARTBEAT = 9;
/** A frame's size prefix and its request's api_key (PROTOCOL.md section 2). */
const FRAME_SIZE_BYTES = 4;
const API_KEY_BYTES = 2;

/** Watches a client's request frames and reports each request's api_key. */
class RequestKeys {
  #pending = new Uint8Array(0);
  readonly #onKey: (apiKey: number) => void;

  constructor(onKey: (apiKey: number) => void) {
    this.#onKey = onKey;
  }

  push(chunk: Uint8Array): void {
    const joined = new Uint8Array(this.#pending.length + chunk.length);
    joined.set(this.#pending, 0);
    joined.set(chunk, this.#pending.length);
    const view = new DataView(joined.buffer);
    let position = 0;
    while (position + FRAME_SIZE_BYTES + API_KEY_BYTES <= joined.length) {
      const size = view.getUint32(position);
      if (position + FRAME_SIZE_BYTES + size > joined.length) break;
      this.#onKey(view.getUint16(position + FRAME_SIZE_BYTES));
      position += FRAME_SIZE_BYTES + size;
    }
    this.#pending = joined.slice(position);
  }
}

/** A TCP relay that stops passing answers on a connection once it has sent a GroupHeartbeat. */
class HoldingRelay {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  readonly #releases: (() => void)[] = [];
  #held = 0;
  #releasing = false;

  private constructor(target: number) {
    this.#server = net.createServer((client) => this.#relay(client, target));
  }

  #relay(client: net.Socket, target: number): void {
    const upstream = net.connect(target, "127.0.0.1");
    const heldAnswers: Uint8Array[] = [];
    let holding = false;
    const keys = new RequestKeys((apiKey) => {
      if (apiKey === API_GROUP_HEARTBEAT && !this.#releasing) holding = true;
    });
    client.on("data", (chunk: Uint8Array) => {
      keys.push(chunk);
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Uint8Array) => {
      if (!holding) {
        client.write(chunk);
        return;
      }
      heldAnswers.push(chunk);
      this.#held++;
    });
    this.#releases.push(() => {
      holding = false;
      for (const chunk of heldAnswers.splice(0)) client.write(chunk);
    });
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      this.#sockets.add(from);
      from.on("close", () => {
        this.#sockets.delete(from);
        to.destroy();
      });
      from.on("error", () => to.destroy());
    }
  }

  static async start(target: number): Promise<HoldingRelay> {
    const relay = new HoldingRelay(target);
    await new Promise<void>((resolve) => relay.#server.listen(0, "127.0.0.1", resolve));
    return relay;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  /** Chunks of answers held back so far. */
  get held(): number {
    return this.#held;
  }

  /** Passes every held answer on, and every later one as it comes. */
  release(): void {
    this.#releasing = true;
    for (const release of this.#releases) release();
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

test("a consumer closed during its join leaves the group at once", async () => {
  using dir = tempDir();
  // The default session timeout (45 s): only a leave can empty the group within the test.
  const server = await SluiceServer.start({ dataDir: dir.path, port: 0, log: () => undefined });
  const relay = await HoldingRelay.start(server.port);
  const admin = new Admin({ port: server.port });
  const consumer = new Consumer({ port: relay.port, group: "closers", maxWaitMs: 20 });
  try {
    await admin.createTopics([{ name: "t", partitions: 2 }]);
    consumer.subscribe(["t"]);
    await waitFor(
      async () => (await admin.describeGroup("closers")).members.length === 1,
      "the join to reach the server",
    );
    await waitFor(() => relay.held > 0, "the join's answer to be held back");
    const closing = consumer.close();
    relay.release();
    await closing;
    const description = await admin.describeGroup("closers");
    assert.deepEqual(description.members, []);
    // With no member and no committed offset the group drops out of ListGroups altogether.
    const listing = (await admin.listGroups()).find((g) => g.groupId === "closers");
    assert.equal(listing, undefined);
  } finally {
    await consumer.close();
    await admin.close();
    await relay.close();
    await server.close();
  }
});
