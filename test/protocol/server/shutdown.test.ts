// Shutdown answers what it owes, and a produce whose later batch is refused cannot leave an
// earlier batch's failure unhandled.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeRecordBatch } from "../../../engine/mod.ts";
import { readMsgpack, writeMsgpack } from "../../../protocol/codec/control.ts";
import { readFetchResponse, writeFetchRequest } from "../../../protocol/codec/fetch.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { readProduceResponse, writeProduceRequest } from "../../../protocol/codec/produce.ts";
import { WIRE_ERRORS } from "../../../protocol/codec/errors.ts";
import { SluiceServer } from "../../../protocol/server/mod.ts";
import { FaultyIO } from "../../engine/partition_log_helpers.ts";
import { tempDir, waitFor } from "../../helpers.ts";
import { RawClient } from "./raw_client.ts";

describe("server shutdown and refused batches", () => {
  test("close answers a parked long poll before the connection ends", async () => {
    using dir = tempDir();
    const server = await SluiceServer.start({
      dataDir: dir.path,
      port: 0,
      engineOptions: { onWarning: () => {} },
    });
    await server.engine.createTopic("quiet");
    const client = await RawClient.connect(server.port);
    await client.handshake();
    const id = client.request(API.Fetch, (w) =>
      writeFetchRequest(w, {
        maxWaitMs: 30_000,
        minBytes: 1,
        maxBytes: 1024,
        topics: [
          {
            topic: "quiet",
            partitions: [{ partition: 0, fetchOffset: 0, partitionMaxBytes: 1024 }],
          },
        ],
      }),
    );
    await waitFor(
      () => (server.stats()["requests"] as Record<string, number>)["5"] === 1,
      "the poll",
    );
    await server.close();
    const { errorCode, reader } = await client.response(id);
    assert.equal(errorCode, 0);
    const response = readFetchResponse(reader.raw(reader.remaining));
    assert.equal(response.topics[0]!.partitions[0]!.errorCode, 0);
    await client.waitClosed();
  });

  test("a refused later batch leaves the earlier batch's disk-full failure handled", async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    io.onWrite = () => ({ code: "ENOSPC" });
    const server = await SluiceServer.start({
      dataDir: dir.path,
      port: 0,
      engineOptions: { io, onWarning: () => {} },
    });
    try {
      await server.engine.createTopic("t", { config: { fsync: "never" } });
      const good = encodeRecordBatch([{ value: new Uint8Array([1]) }], { timestamp: 1 });
      const bad = encodeRecordBatch([{ value: new Uint8Array([2]) }], { timestamp: 1 });
      bad[bad.length - 1]! ^= 0xff;
      const records = new Uint8Array(good.length + bad.length);
      records.set(good);
      records.set(bad, good.length);
      const client = await RawClient.connect(server.port);
      await client.handshake();
      const id = client.request(API.Produce, (w) =>
        writeProduceRequest(w, {
          acks: 1,
          timeoutMs: 5000,
          topics: [{ topic: "t", partitions: [{ partition: 0, records }] }],
        }),
      );
      // The answer waits for the first batch, whose write fails (ENOSPC): nothing of the
      // partition was appended, and the first failure in order is the partition's error.
      const result = readProduceResponse((await client.response(id)).reader);
      assert.equal(result.topics[0]!.partitions[0]!.errorCode, WIRE_ERRORS.DISK_FULL);
      assert.equal(result.topics[0]!.partitions[0]!.baseOffset, -1);
      assert.ok(io.writeCount > 0, "the first batch's write was tried");
      const stats = client.request(API.Stats, (w) => writeMsgpack(w, {}));
      assert.equal(
        typeof readMsgpack((await client.response(stats)).reader, "s")["uptimeMs"],
        "number",
      );
      client.close();
    } finally {
      await server.close();
    }
  });
});
