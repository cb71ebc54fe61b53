// The consumer's pipelined fetches: the fetch for the records after a poll's is sent when the
// poll hands its records out, its records come out of the next poll exactly once, and a pause
// or a seek in between drops what was fetched ahead without losing or repeating a record.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeRecordBatch } from "../../../engine/mod.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { Consumer, type ConsumerRecord } from "../../../protocol/client/consumer.ts";
import { waitFor } from "../../helpers.ts";
import { type FakeRequest, FakeServer } from "./fake_server.ts";

const utf8 = new TextEncoder();
const text = new TextDecoder();

async function withConsumer(
  run: (server: FakeServer, consumer: Consumer) => Promise<void>,
): Promise<void> {
  const server = await FakeServer.start();
  server.createTopic("t", 1);
  const consumer = new Consumer({ port: server.port, maxWaitMs: 20, retryBackoffMs: 1 });
  consumer.assign([{ topic: "t", partition: 0, offset: 0 }]);
  try {
    await run(server, consumer);
  } finally {
    await consumer.close();
    await server.close();
  }
}

function append(server: FakeServer, values: string[]): void {
  const records = values.map((value) => ({ value: utf8.encode(value), timestamp: 1 }));
  server.appendTo("t", 0, encodeRecordBatch(records));
}

/** Holds Fetch requests from the `from`-th on (1-based) until released; counts them all. */
function holdFetches(server: FakeServer, from: number) {
  const held: FakeRequest[] = [];
  let seen = 0;
  server.hook = (request) => {
    if (request.apiKey !== API.Fetch) return false;
    seen++;
    if (seen < from) return false;
    held.push(request);
    return true;
  };
  return {
    held,
    get seen() {
      return seen;
    },
    release(): void {
      server.hook = undefined;
      for (const request of held.splice(0)) server.handle(request);
    },
  };
}

/** Polls until `count` records came in all. */
async function pollFor(consumer: Consumer, count: number): Promise<ConsumerRecord[]> {
  const records: ConsumerRecord[] = [];
  await waitFor(async () => {
    records.push(...(await consumer.poll()));
    return records.length >= count;
  }, `${count} records`);
  return records;
}

const values = (records: ConsumerRecord[]) => records.map((r) => text.decode(r.value!));

describe("Consumer fetch pipelining", () => {
  test("the fetch for the next records goes out when a poll hands its records over", () =>
    withConsumer(async (server, consumer) => {
      append(server, ["a", "b"]);
      const fetches = holdFetches(server, 2);
      assert.deepEqual(values(await pollFor(consumer, 2)), ["a", "b"]);
      await waitFor(() => fetches.seen === 2, "the next fetch, before any other poll");
      append(server, ["c"]);
      fetches.release();
      assert.deepEqual(values(await pollFor(consumer, 1)), ["c"]);
      assert.deepEqual(await consumer.poll({ maxWaitMs: 5 }), [], "each record once");
    }));

  test("a pause drops what was fetched ahead; after resume it comes once", () =>
    withConsumer(async (server, consumer) => {
      append(server, ["a"]);
      const fetches = holdFetches(server, 2);
      assert.deepEqual(values(await pollFor(consumer, 1)), ["a"]);
      await waitFor(() => fetches.held.length === 1, "the fetch sent ahead");
      append(server, ["b"]);
      fetches.release();
      consumer.pause([{ topic: "t", partition: 0 }]);
      assert.deepEqual(await consumer.poll(), [], "nothing from a paused partition");
      consumer.resume([{ topic: "t", partition: 0 }]);
      assert.deepEqual(values(await pollFor(consumer, 1)), ["b"]);
      assert.deepEqual(await consumer.poll({ maxWaitMs: 5 }), []);
    }));

  test("a seek drops what was fetched ahead: the next records start at the new offset", () =>
    withConsumer(async (server, consumer) => {
      append(server, ["a", "b", "c"]);
      const fetches = holdFetches(server, 2);
      assert.deepEqual(values(await pollFor(consumer, 3)), ["a", "b", "c"]);
      await waitFor(() => fetches.held.length === 1, "the fetch sent ahead");
      append(server, ["d"]);
      consumer.seek({ topic: "t", partition: 0, offset: 1 });
      fetches.release();
      const records = await pollFor(consumer, 3);
      assert.deepEqual(values(records), ["b", "c", "d"]);
      assert.deepEqual(
        records.map((r) => r.offset),
        [1, 2, 3],
      );
    }));
});
