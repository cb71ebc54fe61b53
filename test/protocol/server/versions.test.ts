// Produce and Fetch version 2, served beside version 1 (whose bytes do not change: see
// spec_examples.test.ts): a Produce answer says how many of a partition's batches were
// appended before a refused one, and a Fetch that meets damaged data says where to resume.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { decodeRecordBatches, encodeRecordBatch } from "../../../engine/mod.ts";
import { WIRE_ERRORS } from "../../../protocol/codec/errors.ts";
import {
  type FetchResponse,
  readFetchResponse,
  writeFetchRequest,
} from "../../../protocol/codec/fetch.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { readHandshakeResponse, writeHandshakeRequest } from "../../../protocol/codec/handshake.ts";
import { readProduceResponse, writeProduceRequest } from "../../../protocol/codec/produce.ts";
import { SluiceServer } from "../../../protocol/server/mod.ts";
import { batchSizeAt } from "../../../record/mod.ts";
import { tempDir } from "../../helpers.ts";
import type { RawClient } from "./raw_client.ts";
import { connected, startTestServer } from "./serving.ts";

const text = new TextEncoder();

function batchOf(value: string): Uint8Array {
  return encodeRecordBatch([{ value: text.encode(value) }], { timestamp: 1_700_000_000_000 });
}

function concat(parts: Uint8Array[]): Uint8Array {
  const joined = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    joined.set(part, at);
    at += part.length;
  }
  return joined;
}

async function produceV2(client: RawClient, topic: string, records: Uint8Array) {
  const id = client.request(
    API.Produce,
    (w) =>
      writeProduceRequest(w, {
        acks: 1,
        timeoutMs: 30_000,
        topics: [{ topic, partitions: [{ partition: 0, records }] }],
      }),
    2,
  );
  const { errorCode, reader } = await client.response(id);
  assert.equal(errorCode, 0);
  return readProduceResponse(reader, 2).topics[0]!.partitions[0]!;
}

async function fetchAt(
  client: RawClient,
  topic: string,
  fetchOffset: number,
  version: 1 | 2,
): Promise<FetchResponse["topics"][number]["partitions"][number]> {
  const id = client.request(
    API.Fetch,
    (w) =>
      writeFetchRequest(w, {
        maxWaitMs: 0,
        minBytes: 0,
        maxBytes: 1024 * 1024,
        topics: [{ topic, partitions: [{ partition: 0, fetchOffset, partitionMaxBytes: 65_536 }] }],
      }),
    version,
  );
  const { errorCode, reader } = await client.response(id);
  assert.equal(errorCode, 0);
  const body = reader.bytes.subarray(reader.position);
  return readFetchResponse(body, version).topics[0]!.partitions[0]!;
}

function valuesOf(records: Uint8Array[]): string[] {
  const decoder = new TextDecoder();
  return [...decodeRecordBatches(concat(records))].flatMap((batch) =>
    batch.records.map((record) => decoder.decode(record.value!)),
  );
}

describe("Produce and Fetch version 2", () => {
  test("the handshake offers v2 of Produce, Fetch, QueueFetch and QueueAck", async () => {
    await using t = await startTestServer();
    using client = await connected(t.port, false);
    const id = client.request(API.Handshake, (w) =>
      writeHandshakeRequest(w, { clientName: "v", clientVersion: "0" }),
    );
    const { reader } = await client.response(id);
    const { apis } = readHandshakeResponse(reader);
    for (const { apiKey, min, max } of apis) {
      const two = ([API.Produce, API.Fetch, API.QueueFetch, API.QueueAck] as number[]).includes(
        apiKey,
      );
      assert.deepEqual([min, max], [1, two ? 2 : 1], `api ${apiKey}`);
    }
    const three = client.request(API.Fetch, () => {}, 3);
    assert.equal((await client.response(three)).errorCode, WIRE_ERRORS.UNSUPPORTED_VERSION);
  });

  test("a Produce v2 answer counts the batches appended before a refused one", async () => {
    await using t = await startTestServer();
    await t.server.engine.createTopic("counted", { config: { fsync: "never" } });
    using client = await connected(t.port);
    const whole = await produceV2(client, "counted", concat([batchOf("a"), batchOf("b")]));
    assert.deepEqual([whole.errorCode, whole.baseOffset, whole.acceptedBatches], [0, 0, 2]);
    const damaged = batchOf("bad");
    damaged[damaged.length - 1] = damaged[damaged.length - 1]! ^ 1;
    const records = concat([batchOf("c"), damaged, batchOf("d")]);
    const partial = await produceV2(client, "counted", records);
    assert.deepEqual(
      [partial.errorCode, partial.baseOffset, partial.acceptedBatches],
      [WIRE_ERRORS.CORRUPT_BATCH, 2, 1],
    );
    const none = await produceV2(client, "counted", damaged);
    assert.deepEqual(
      [none.errorCode, none.baseOffset, none.acceptedBatches],
      [WIRE_ERRORS.CORRUPT_BATCH, -1, 0],
    );
    // One whole batch (the server's one-batch path) counts as one.
    const one = await produceV2(client, "counted", batchOf("e"));
    assert.deepEqual([one.errorCode, one.baseOffset, one.acceptedBatches], [0, 3, 1]);
    assert.equal(t.server.engine.partition("counted", 0).highWatermark, 4);
  });

  test("a Fetch v2 that meets damaged data says the offset to resume from", async () => {
    using dir = tempDir();
    const options = {
      dataDir: dir.path,
      port: 0,
      log: () => {},
      engineOptions: { onWarning: () => {} },
    };
    let server = await SluiceServer.start(options);
    await server.engine.createTopic("rot", { config: { fsync: "never" } });
    for (const value of ["zero", "one", "two", "three"]) {
      await server.engine.append("rot", 0, batchOf(value));
    }
    await server.close();
    // Damage batch 1's records: its CRC-32C no longer matches.
    const path = join(dir.path, "rot-0", "00000000000000000000.log");
    const file = new Uint8Array(fs.readFileSync(path));
    const second = batchSizeAt(file, 0);
    const end = second + batchSizeAt(file, second);
    file[end - 2] = file[end - 2]! ^ 0x55;
    fs.writeFileSync(path, file);

    server = await SluiceServer.start(options);
    try {
      using client = await connected(server.port);
      const before = await fetchAt(client, "rot", 0, 2);
      assert.equal(before.errorCode, 0);
      assert.deepEqual(valuesOf(before.records), ["zero"], "what lies before the damage");
      const damaged = await fetchAt(client, "rot", 1, 2);
      assert.equal(damaged.errorCode, WIRE_ERRORS.CORRUPT_BATCH);
      assert.equal(damaged.resumeOffset, 2);
      assert.equal(concat(damaged.records).length, 0, "no records with the error");
      const resumed = await fetchAt(client, "rot", damaged.resumeOffset!, 2);
      assert.deepEqual(valuesOf(resumed.records), ["two", "three"]);
      assert.equal(resumed.resumeOffset, -1);
      // Version 1 says the same without the new field.
      const v1 = await fetchAt(client, "rot", 1, 1);
      assert.equal(v1.errorCode, WIRE_ERRORS.CORRUPT_BATCH);
      assert.equal(v1.resumeOffset, undefined);
    } finally {
      await server.close();
    }
  });
});
