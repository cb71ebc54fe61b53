// Produce with acks 0 counts against inFlightMax (PROTOCOL.md section 2): the client's
// connection gives each one an in-flight slot, waiting for a free one like any request, and
// frees it once the socket has taken the whole frame. Against a server with inFlightMax 2 whose
// disk writes are held back (so it stops reading the connection), a fast acks-0 sender is held
// back by its own slots instead of queueing every frame in memory; once the writes go on,
// every record arrives and nothing was refused.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeRecordBatch, type FileIO, realFileIO } from "../../../engine/mod.ts";
import { ClientConnection } from "../../../protocol/client/connection.ts";
import { Producer } from "../../../protocol/client/mod.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { writeProduceRequest } from "../../../protocol/codec/produce.ts";
import { waitFor } from "../../helpers.ts";
import { startTestServer } from "../server/serving.ts";

const IN_FLIGHT_MAX = 2;
const FRAMES = 400;
const RECORD_BYTES = 64 * 1024;

/** realFileIO whose data writes wait while held. */
class HeldWrites {
  held = false;
  #release: (() => void) | undefined;
  #gate: Promise<void> | undefined;

  readonly io: FileIO = {
    ...realFileIO,
    writeAll: async (fd, buffers, position) => {
      if (this.held) {
        this.#gate ??= new Promise((resolve) => {
          this.#release = resolve;
        });
        await this.#gate;
      }
      return realFileIO.writeAll(fd, buffers, position);
    },
  };

  let(): void {
    this.held = false;
    this.#release?.();
    this.#gate = undefined;
  }
}

function highWatermark(served: {
  server: { engine: { partition(t: string, p: number): { highWatermark: number } } };
}): number {
  return served.server.engine.partition("t", 0).highWatermark;
}

describe("acks-0 Produce and inFlightMax", () => {
  test("the connection holds acks-0 frames in its in-flight slots until written", async () => {
    const writes = new HeldWrites();
    await using served = await startTestServer({
      limits: { inFlightMax: IN_FLIGHT_MAX },
      engineOptions: { io: writes.io },
    });
    await served.server.engine.createTopic("t", { partitions: 1, config: { fsync: "never" } });
    const connection = await ClientConnection.connect("127.0.0.1", served.port);
    try {
      assert.equal(connection.inFlightMax, IN_FLIGHT_MAX);
      writes.held = true;
      const records = encodeRecordBatch([{ value: new Uint8Array(RECORD_BYTES) }]);
      let sent = 0;
      const sends = Array.from({ length: FRAMES }, () =>
        connection
          .requestWithoutResponse(API.Produce, (w) =>
            writeProduceRequest(w, {
              acks: 0,
              timeoutMs: 30_000,
              topics: [{ topic: "t", partitions: [{ partition: 0, records }] }],
            }),
          )
          .then(() => {
            sent++;
          }),
      );
      // Held back by its own slots (the server has stopped reading), or every frame handed
      // over at once, whichever comes first.
      await waitFor(
        () =>
          sent === FRAMES ||
          (served.server.stats()["pausedConnections"] === 1 &&
            connection.inFlight === IN_FLIGHT_MAX &&
            connection.waiting > 0 &&
            connection.unwrittenBytes > 0),
        "the sender to stall",
      );
      assert.ok(sent < FRAMES, `${sent} of ${FRAMES} frames handed over while the server stalls`);
      assert.ok(connection.inFlight <= IN_FLIGHT_MAX);
      const frameBytes = records.length + 64;
      assert.ok(
        connection.unwrittenBytes <= IN_FLIGHT_MAX * frameBytes,
        `${connection.unwrittenBytes} bytes queued in the client`,
      );
      writes.let();
      await Promise.all(sends);
      await waitFor(() => highWatermark(served) === FRAMES, "every record stored");
      assert.equal(connection.inFlight, 0);
      assert.equal(served.server.stats()["refusedRequests"], 0);
    } finally {
      writes.let();
      await connection.close();
    }
  });

  test("close settles every acks-0 frame: queued ones as sent, waiting ones CLOSED", async () => {
    const writes = new HeldWrites();
    await using served = await startTestServer({
      limits: { inFlightMax: IN_FLIGHT_MAX },
      engineOptions: { io: writes.io },
    });
    await served.server.engine.createTopic("t", { partitions: 1, config: { fsync: "never" } });
    const connection = await ClientConnection.connect("127.0.0.1", served.port);
    try {
      writes.held = true;
      const records = encodeRecordBatch([{ value: new Uint8Array(RECORD_BYTES) }]);
      const outcomes: string[] = [];
      const sends = Array.from({ length: FRAMES }, () =>
        connection
          .requestWithoutResponse(API.Produce, (w) =>
            writeProduceRequest(w, {
              acks: 0,
              timeoutMs: 30_000,
              topics: [{ topic: "t", partitions: [{ partition: 0, records }] }],
            }),
          )
          .then(
            () => outcomes.push("sent"),
            (error: { code?: string }) => outcomes.push(error.code ?? "?"),
          ),
      );
      await waitFor(
        () =>
          outcomes.length === FRAMES ||
          (served.server.stats()["pausedConnections"] === 1 &&
            connection.inFlight === IN_FLIGHT_MAX &&
            connection.unwrittenBytes > 0),
        "the sender to stall",
      );
      const waiting = connection.waiting;
      const settled = outcomes.length;
      await connection.close();
      await Promise.all(sends);
      assert.equal(outcomes.filter((o) => o === "CLOSED").length, waiting);
      assert.equal(outcomes.filter((o) => o === "sent").length, settled + IN_FLIGHT_MAX);
    } finally {
      writes.let();
      await connection.close();
    }
  });

  test("an acks-0 Producer against a small inFlightMax delivers every record", async () => {
    const writes = new HeldWrites();
    await using served = await startTestServer({
      limits: { inFlightMax: IN_FLIGHT_MAX },
      engineOptions: { io: writes.io },
    });
    await served.server.engine.createTopic("t", { partitions: 1, config: { fsync: "never" } });
    const producer = new Producer({
      host: "127.0.0.1",
      port: served.port,
      acks: 0,
      lingerMs: 0,
      batchBytes: RECORD_BYTES + 1024,
      bufferBytesMax: 64 * 1024 * 1024,
    });
    try {
      writes.held = true;
      let delivered = 0;
      const sends = Array.from({ length: FRAMES }, () =>
        producer.send({ topic: "t", value: new Uint8Array(RECORD_BYTES) })!.then(() => {
          delivered++;
        }),
      );
      await waitFor(
        () => delivered === FRAMES || served.server.stats()["pausedConnections"] === 1,
        "the server to stop reading",
      );
      assert.ok(delivered < FRAMES, "records wait in the producer while the server stalls");
      writes.let();
      await Promise.all(sends);
      await producer.flush();
      await waitFor(() => highWatermark(served) === FRAMES, "every record stored");
      assert.equal(served.server.stats()["refusedRequests"], 0);
    } finally {
      writes.let();
      await producer.close();
    }
  });
});
