// PROTOCOL.md section 10 against a real server: the QueueFetch and QueueAck requests shown are
// what the codecs write, and the answers shown are what the server sends, byte for byte.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { readMsgpack, writeMsgpack } from "../../../protocol/codec/control.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { SluiceServer } from "../../../protocol/server/mod.ts";
import { PROJECT_ROOT, tempDir } from "../../helpers.ts";
import { RawClient } from "../server/raw_client.ts";
import { exampleProduceRequest } from "../spec_examples.ts";
import {
  EXAMPLE_MEMBER_ID,
  EXAMPLE_QUEUE,
  exampleQueueAckRequest,
  exampleQueueAckV2Request,
  exampleQueueFetchRequest,
  exampleQueueFetchV2Request,
  hexBlocksAfter,
} from "./spec_queue_examples.ts";

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

function withPrefix(payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(4 + payload.length);
  new DataView(frame.buffer).setUint32(0, payload.length);
  frame.set(payload, 4);
  return frame;
}

async function control(client: RawClient, apiKey: number, body: object) {
  const id = client.request(apiKey, (writer) => writeMsgpack(writer, body));
  const { errorCode, reader } = await client.response(id);
  assert.equal(errorCode, 0);
  return readMsgpack(reader, "response");
}

test("PROTOCOL.md's queue example is what a real server exchanges", async () => {
  const spec = fs.readFileSync(join(PROJECT_ROOT, "protocol/PROTOCOL.md"), "utf8");
  const blocks = hexBlocksAfter(spec, "## 10. Worked example: a queue");
  assert.equal(blocks.length, 4);
  const [fetchRequest, fetchResponse, ackRequest, ackResponse] = blocks;
  assert.equal(hex(exampleQueueFetchRequest(EXAMPLE_MEMBER_ID)), fetchRequest);
  assert.equal(hex(exampleQueueAckRequest(EXAMPLE_MEMBER_ID)), ackRequest);
  using dir = tempDir();
  const server = await SluiceServer.start({ dataDir: dir.path, port: 0 });
  const client = await RawClient.connect(server.port);
  try {
    await client.handshake();
    await control(client, API.CreateTopics, { topics: [{ name: "demo" }] });
    client.send(exampleProduceRequest());
    await client.response(10);
    const declared = await control(client, API.QueueDeclare, {
      name: EXAMPLE_QUEUE,
      topic: "demo",
      from: "beginning",
    });
    assert.equal(declared["errorCode"], 0);
    const joined = await control(client, API.QueueJoin, { queue: EXAMPLE_QUEUE });
    const memberId = joined["memberId"] as string;
    assert.deepEqual(
      { ...joined, memberId: EXAMPLE_MEMBER_ID },
      {
        errorCode: 0,
        errorMessage: null,
        memberId: EXAMPLE_MEMBER_ID,
        topic: "demo",
        partitions: 1,
        lockMs: 30_000,
        prefetch: 1000,
      },
    );
    client.send(exampleQueueFetchRequest(memberId));
    await client.response(20);
    client.send(exampleQueueAckRequest(memberId));
    await client.response(21);
    const byId = (id: number) =>
      client.frames.find((frame) => new DataView(frame.buffer).getUint32(0) === id)!;
    assert.equal(hex(withPrefix(byId(20))), fetchResponse);
    assert.equal(hex(withPrefix(byId(21))), ackResponse);
  } finally {
    client.close();
    await server.close();
  }
});

test("PROTOCOL.md's QueueFetch v2 example is what a real server exchanges", async () => {
  const spec = fs.readFileSync(join(PROJECT_ROOT, "protocol/PROTOCOL.md"), "utf8");
  const blocks = hexBlocksAfter(spec, "## 10a. Worked example: QueueFetch v2");
  assert.equal(blocks.length, 4);
  const [fetchRequest, fetchResponse, ackRequest, ackResponse] = blocks;
  using dir = tempDir();
  // As the example says: a server whose v2 fetches never wait for their acks' fdatasync.
  const limits = { queueFetchAckWaitMs: 0 };
  const server = await SluiceServer.start({ dataDir: dir.path, port: 0, limits });
  const client = await RawClient.connect(server.port);
  try {
    await client.handshake();
    await control(client, API.CreateTopics, { topics: [{ name: "demo" }] });
    client.send(exampleProduceRequest());
    await client.response(10);
    await control(client, API.QueueDeclare, {
      name: EXAMPLE_QUEUE,
      topic: "demo",
      from: "beginning",
    });
    const joined = await control(client, API.QueueJoin, { queue: EXAMPLE_QUEUE });
    const memberId = joined["memberId"] as string;
    client.send(exampleQueueFetchRequest(memberId));
    await client.response(20);
    client.send(exampleQueueFetchV2Request(memberId));
    await client.response(30);
    client.send(exampleQueueAckV2Request(memberId));
    await client.response(31);
    const byId = (id: number) =>
      client.frames.find((frame) => new DataView(frame.buffer).getUint32(0) === id)!;
    if (process.env["SLUICE_PRINT_EXAMPLE"] === "1") {
      console.log(hex(exampleQueueFetchV2Request(EXAMPLE_MEMBER_ID)));
      console.log(hex(withPrefix(byId(30))));
      console.log(hex(exampleQueueAckV2Request(EXAMPLE_MEMBER_ID)));
      console.log(hex(withPrefix(byId(31))));
    }
    assert.equal(hex(exampleQueueFetchV2Request(EXAMPLE_MEMBER_ID)), fetchRequest);
    assert.equal(hex(exampleQueueAckV2Request(EXAMPLE_MEMBER_ID)), ackRequest);
    assert.equal(hex(withPrefix(byId(30))), fetchResponse);
    assert.equal(hex(withPrefix(byId(31))), ackResponse);
  } finally {
    client.close();
    await server.close();
  }
});
