// PROTOCOL.md section 12 against a real server: the ExchangePublish request shown is what the
// codec writes (the record batch of section 9 through a direct exchange), and the answer shown
// is what the server sends, byte for byte.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { readMsgpack, writeMsgpack } from "../../../protocol/codec/control.ts";
import { writeExchangePublishRequest } from "../../../protocol/codec/exchange.ts";
import { API, finishFrame, startRequest } from "../../../protocol/codec/frames.ts";
import { SluiceServer } from "../../../protocol/server/mod.ts";
import { PROJECT_ROOT, tempDir } from "../../helpers.ts";
import { RawClient } from "../server/raw_client.ts";
import { EXAMPLE_BATCH } from "../spec_examples.ts";
import { hexBlocksAfter } from "./spec_queue_examples.ts";

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

function examplePublishRequest(): Uint8Array {
  const writer = startRequest({ apiKey: API.ExchangePublish, apiVersion: 1, correlationId: 30 });
  writeExchangePublishRequest(writer, {
    acks: 1,
    timeoutMs: 30_000,
    exchange: "demo-x",
    records: EXAMPLE_BATCH,
  });
  return finishFrame(writer);
}

async function control(client: RawClient, apiKey: number, body: object) {
  const id = client.request(apiKey, (writer) => writeMsgpack(writer, body));
  const { errorCode, reader } = await client.response(id);
  assert.equal(errorCode, 0);
  const answer = readMsgpack(reader, "response");
  assert.equal(answer["errorCode"] ?? 0, 0, String(answer["errorMessage"]));
  return answer;
}

test("PROTOCOL.md's exchange example is what a real server exchanges", async () => {
  const spec = fs.readFileSync(join(PROJECT_ROOT, "protocol/PROTOCOL.md"), "utf8");
  const blocks = hexBlocksAfter(spec, "## 12. Worked example: publishing through an exchange");
  assert.equal(blocks.length, 2);
  const [request, response] = blocks;
  assert.equal(hex(examplePublishRequest()), request);
  using dir = tempDir();
  const server = await SluiceServer.start({ dataDir: dir.path, port: 0 });
  const client = await RawClient.connect(server.port);
  try {
    await client.handshake();
    await control(client, API.CreateTopics, { topics: [{ name: "demo" }] });
    await control(client, API.ExchangeDeclare, { name: "demo-x", type: "direct" });
    await control(client, API.ExchangeBind, { exchange: "demo-x", topic: "demo", routingKey: "k" });
    client.send(examplePublishRequest());
    await client.response(30);
    const frame = client.frames.find((f) => new DataView(f.buffer).getUint32(0) === 30)!;
    const prefixed = new Uint8Array(4 + frame.length);
    new DataView(prefixed.buffer).setUint32(0, frame.length);
    prefixed.set(frame, 4);
    assert.equal(hex(prefixed), response);
  } finally {
    client.close();
    await server.close();
  }
});
