// What the server allocates for a produce request's partitions when each carries one batch
// (the usual request of a lingerMs 0 producer at a steady rate): no per-partition promise
// combinator, no async frame of its own. Counted under Bun with JavaScriptCore's heap
// statistics (objects of each type in the heap): a collection between the two counts can only
// lower the difference, never raise it. The answers of that path (a batch appended, a batch
// refused) are checked in versions.test.ts, "a Produce v2 answer counts the batches ...".

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Admin, Producer } from "../../../protocol/client/mod.ts";
import { SluiceServer } from "../../../protocol/server/mod.ts";
import { tempDir } from "../../helpers.ts";

const isBun = (process.versions as Record<string, string | undefined>)["bun"] !== undefined;
const PARTITIONS = 10;
const ROUNDS = 300;

type Counts = Record<string, number>;

async function objectCounts(): Promise<() => Counts> {
  // A name in a variable: Deno never resolves Bun's module (the test is skipped there).
  const name = "bun:jsc";
  const jsc = (await import(name)) as { heapStats(): { objectTypeCounts: Counts } };
  return () => jsc.heapStats().objectTypeCounts;
}

/** One request per round: one record to each partition, all acknowledged before the next. */
async function produceRounds(producer: Producer, rounds: number): Promise<void> {
  const value = new Uint8Array(1024);
  for (let round = 0; round < rounds; round++) {
    await new Promise<void>((done, fail) => {
      let acked = 0;
      for (let partition = 0; partition < PARTITIONS; partition++) {
        producer.send({ topic: "t", value, partition }, (error) => {
          if (error !== null) fail(error);
          else if (++acked === PARTITIONS) done();
        });
      }
    });
  }
}

describe("produce of one-batch partitions", () => {
  test("allocates no promise combinator per partition", { skip: !isBun }, async () => {
    using dir = tempDir();
    await using server = await SluiceServer.start({ dataDir: dir.path, port: 0 });
    const admin = new Admin({ port: server.port });
    await admin.createTopics([{ name: "t", partitions: PARTITIONS, config: { fsync: "never" } }]);
    await admin.close();
    const producer = new Producer({ port: server.port, acks: 1, lingerMs: 0 });
    try {
      const counts = await objectCounts();
      await produceRounds(producer, ROUNDS);
      const before = counts()["PromiseCombinatorsGlobalContext"] ?? 0;
      await produceRounds(producer, ROUNDS);
      const after = counts()["PromiseCombinatorsGlobalContext"] ?? 0;
      // One Promise.all per topic of a request is left (the general path added one
      // Promise.allSettled per partition: PARTITIONS per round more).
      assert.ok(after - before <= 2 * ROUNDS, `${after - before} combinators in ${ROUNDS} rounds`);
    } finally {
      await producer.close();
    }
  });
});
