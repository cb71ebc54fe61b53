// The catch-up consume loop shared by bench:tcp and tools/tcp_cpu.ts (bench/tcp/consume_loop.ts):
// it takes a consumer the caller assigned, reads until the records asked for arrived, counts
// their value bytes, and closes the consumer.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { consumeAll } from "../../bench/tcp/consume_loop.ts";
import { Consumer, Producer } from "../../protocol/client/mod.ts";
import { waitFor } from "../helpers.ts";
import { startTestServer } from "../protocol/server/serving.ts";

describe("bench/tcp consume loop", () => {
  test("reads every published record of the assigned partitions, then closes", async () => {
    await using served = await startTestServer();
    await served.server.engine.createTopic("t", { partitions: 2 });
    const producer = new Producer({ port: served.port, acks: 1 });
    for (let i = 0; i < 50; i++) {
      void producer.send({ topic: "t", partition: i % 2, value: new Uint8Array(10 + (i % 3)) });
    }
    await producer.close();
    const consumer = new Consumer({ port: served.port });
    consumer.assign([0, 1].map((partition) => ({ topic: "t", partition, offset: 0 })));
    const read = await consumeAll({ consumer, records: 50, pollWaitMs: 100 });
    assert.equal(read.records, 50);
    let bytes = 0;
    for (let i = 0; i < 50; i++) bytes += 10 + (i % 3);
    assert.equal(read.bytes, bytes);
    assert.ok(read.seconds >= 0);
    // The loop closed the consumer: the broker sees no client connection left.
    await waitFor(() => served.server.stats()["connections"] === 0, "the consumer's close");
  });
});
