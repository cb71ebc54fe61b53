// A sluice client in plain JavaScript, for Node ≥ 20 (Bun and Deno run it too): create a topic,
// produce 1,000 keyed records with acks "all", read them back in a consumer group, commit, and
// check the group's committed offsets. Against a running broker (`sluice serve --port 9092`):
//
//   node examples/client.mjs 127.0.0.1:9092
//
// It prints `produced 1000 consumed 1000` and exits 0, or names what went wrong and exits 1.

import { Admin, Consumer, Producer } from "sluice/client";

const RECORDS = 1000;
const PARTITIONS = 3;
const CONSUME_TIMEOUT_MS = 30_000;

const [host, portText] = (process.argv[2] ?? "127.0.0.1:9092").split(":");
const port = Number(portText);
const topic = `example-${Date.now()}`;

const admin = new Admin({ host, port });
await admin.createTopics([{ name: topic, partitions: PARTITIONS }]);

// send() batches records per partition (by key hash); awaiting them all lets them share
// batches, and "all" resolves each once the broker has fsynced it.
const producer = new Producer({ host, port, acks: "all" });
const sends = [];
for (let i = 0; i < RECORDS; i++) {
  sends.push(producer.send({ topic, key: `customer-${i % 50}`, value: `order ${i}` }));
}
await Promise.all(sends);
await producer.close();

const consumer = new Consumer({ host, port, group: `${topic}-readers`, autoCommit: false });
consumer.subscribe([topic], { fromBeginning: true });
let consumed = 0;
const deadline = Date.now() + CONSUME_TIMEOUT_MS;
while (consumed < RECORDS) {
  if (Date.now() > deadline) {
    throw new Error(`consumed ${consumed} of ${RECORDS} records in ${CONSUME_TIMEOUT_MS} ms`);
  }
  consumed += (await consumer.poll({ maxWaitMs: 1000 })).length;
}
await consumer.commit();
await consumer.close();

// The committed offsets are the next offset to read in each partition: together, every record.
const committed = await admin.fetchOffsets(`${topic}-readers`);
const committedTotal = committed.reduce((sum, entry) => sum + Math.max(entry.offset, 0), 0);
await admin.close();
if (committedTotal !== RECORDS) {
  throw new Error(`the group committed ${committedTotal} records, not ${RECORDS}`);
}
console.log(`produced ${sends.length} consumed ${consumed}`);
