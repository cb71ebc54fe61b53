import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { writeMsgpack } from "../../protocol/codec/control.ts";
import { API } from "../../protocol/codec/frames.ts";
import { SluiceServer } from "../../protocol/server/mod.ts";
import { PROJECT_ROOT, tempDir } from "../helpers.ts";
import { RawClient } from "./server/raw_client.ts";
import { exampleFetchRequest, exampleProduceRequest, hexBlocks } from "./spec_examples.ts";

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

function withPrefix(payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(4 + payload.length);
  new DataView(frame.buffer).setUint32(0, payload.length);
  frame.set(payload, 4);
  return frame;
}

test("PROTOCOL.md's worked examples are what a real server exchanges", async () => {
  const spec = fs.readFileSync(join(PROJECT_ROOT, "protocol/PROTOCOL.md"), "utf8");
  const [produceRequest, produceResponse, fetchRequest, fetchResponse] = hexBlocks(spec);
  using dir = tempDir();
  const server = await SluiceServer.start({
    dataDir: dir.path,
    port: 0,
    engineOptions: { onWarning: () => {} },
  });
  const client = await RawClient.connect(server.port);
  try {
    await client.handshake();
    const create = client.request(API.CreateTopics, (w) =>
      writeMsgpack(w, { topics: [{ name: "demo" }] }),
    );
    assert.equal((await client.response(create)).errorCode, 0);
    assert.equal(hex(exampleProduceRequest()), produceRequest);
    client.send(exampleProduceRequest());
    await client.response(10);
    assert.equal(hex(exampleFetchRequest()), fetchRequest);
    client.send(exampleFetchRequest());
    await client.response(11);
    const byId = (id: number) =>
      client.frames.find((frame) => new DataView(frame.buffer).getUint32(0) === id)!;
    assert.equal(hex(withPrefix(byId(10))), produceResponse);
    assert.equal(hex(withPrefix(byId(11))), fetchResponse);
  } finally {
    client.close();
    await server.close();
  }
});
