// Started by invariant.test.ts: a server with the default `onFatal`, whose partition's append
// breaks an invariant, and a raw client producing to it. The server must stop this process
// with exit code 70 and one line on stderr; reaching the end of this script is a failure.

import { encodeRecordBatch } from "../../../engine/mod.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { writeProduceRequest } from "../../../protocol/codec/produce.ts";
import { SluiceServer } from "../../../protocol/server/mod.ts";
import { assert } from "../../../record/mod.ts";
import { RawClient } from "./raw_client.ts";

const server = await SluiceServer.start({
  dataDir: process.argv[2]!,
  port: 0,
  engineOptions: { onWarning: () => {} },
  log: () => {},
});
await server.engine.createTopic("t");
server.engine.partition("t", 0).appendChecked = async () => {
  assert(false, "the test's append broke");
};
// acks 1 appends with a listener instead of a promise (server/_produce_answer.ts).
server.engine.partition("t", 0).appendTo = () => {
  assert(false, "the test's append broke");
};
const client = await RawClient.connect(server.port);
await client.handshake();
const records = encodeRecordBatch([{ value: new Uint8Array([1]) }], { timestamp: 1 });
const id = client.request(API.Produce, (w) =>
  writeProduceRequest(w, {
    acks: 1,
    timeoutMs: 5000,
    topics: [{ topic: "t", partitions: [{ partition: 0, records }] }],
  }),
);
const answer = await client.response(id).then(
  ({ errorCode }) => `answered with error code ${errorCode}`,
  (error: Error) => error.message,
);
console.log(`the server did not stop: ${answer}`);
process.exit(0);
