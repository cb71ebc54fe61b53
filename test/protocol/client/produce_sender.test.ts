// The ProduceSender's reading of a ProduceResponse when settling a batch throws: the results it
// put on the partitions' queues are taken off all the same, so a later response that lacks a
// partition is not read with an earlier response's result for it.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { WIRE_ERRORS } from "../../../protocol/codec/errors.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { writeProduceResponse } from "../../../protocol/codec/produce.ts";
import { BatchBuilder, prepareRecord } from "../../../protocol/client/batch_builder.ts";
import { prefixRoomBytes } from "../../../protocol/client/produce_frame.ts";
import { type Done, ProduceSender } from "../../../protocol/client/produce_sender.ts";
import { Session } from "../../../protocol/client/session.ts";
import { FakeServer } from "./fake_server.ts";

type Outcome = { error: Error | null; offset: number | undefined };

function batchOf(value: string, outcome: (o: Outcome) => void): BatchBuilder<Done> {
  const builder = new BatchBuilder<Done>(16 * 1024, Date.now(), {
    prefixRoomBytes: prefixRoomBytes("t"),
  });
  const done: Done = (error, metadata) => outcome({ error, offset: metadata?.offset });
  assert.ok(builder.tryAddRecord(prepareRecord({ value }, Date.now()), done));
  return builder;
}

describe("ProduceSender", () => {
  test("a throwing settle leaves no result for a later response to read", async () => {
    const server = await FakeServer.start();
    server.createTopic("t", 2);
    const session = new Session({ port: server.port });
    const sender = new ProduceSender(session, {
      acks: -1,
      idempotent: false,
      maxInFlight: 1,
      deliveryTimeoutMs: 10_000,
      requestTimeoutMs: 10_000,
      compression: "none",
      batchBytes: 16 * 1024,
      onUnknownTopic: () => {
        throw new Error("topic bookkeeping failed");
      },
      onSlotFree: () => undefined,
    });
    let produces = 0;
    const result = (partition: number, errorCode: number, baseOffset: number) => ({
      partition,
      errorCode,
      baseOffset,
      logStartOffset: 0,
      errorMessage: null,
    });
    server.hook = (request) => {
      if (request.apiKey !== API.Produce) return false;
      produces++;
      // The first request carries partitions 0 and 1: 0 is unknown, 1 written at 99. The
      // second carries partition 1 again and is answered for nothing.
      const partitions =
        produces === 1 ? [result(0, WIRE_ERRORS.UNKNOWN_TOPIC, -1), result(1, 0, 99)] : [];
      request.connection.respond(request.correlationId, (w) =>
        writeProduceResponse(w, { topics: [{ topic: "t", partitions }] }),
      );
      return true;
    };
    try {
      const first = new Promise<Outcome>((resolve) => {
        sender.enqueue(
          "t",
          0,
          batchOf("a", () => undefined),
          64,
          false,
        );
        sender.enqueue("t", 1, batchOf("b", resolve), 64, false);
        sender.sendQueued();
      });
      // Settling partition 0 threw: partition 1's batch fails with that error.
      assert.match((await first).error?.message ?? "", /topic bookkeeping failed/);
      await sender.whenIdle();
      const second = await new Promise<Outcome>((resolve) => {
        sender.enqueue("t", 1, batchOf("c", resolve), 64);
      });
      assert.ok(produces >= 2);
      assert.equal(second.offset, undefined, "not written at the first response's offset");
      assert.equal((second.error as { code?: string } | null)?.code, "MALFORMED_RESPONSE");
    } finally {
      sender.close();
      await session.close();
      await server.close();
    }
  });
});
