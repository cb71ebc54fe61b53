// Fetches at the tail lend views of the tail cache's chunks (engine/segment.ts): the chunks are
// reused for later appends once the consumers' sockets have taken every view of them. A broker
// with a 1 MiB tail-cache budget drops and reuses chunks all the time; two consumers tail one
// partition while a producer appends to it (one of them reading with small maxBytes, so its
// answers cut batches out of every chunk), and each must get every record once, in order, its
// batch CRC checked by the client and its bytes exactly those produced. And answers that
// wait in the server's outbox (a client not reading its socket) keep their chunk out of reuse
// while the tail cache moves on past it: read later, they hold exactly what was appended.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Admin, Consumer } from "../../../protocol/client/mod.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { readFetchResponse, writeFetchRequest } from "../../../protocol/codec/fetch.ts";
import { SluiceServer } from "../../../protocol/server/mod.ts";
import { tempDir, waitFor } from "../../helpers.ts";
import {
  assertFirstRecords,
  batchOf,
  produceRecords,
  RECORD_BYTES,
  RECORDS,
  recordValue,
} from "../tail_records.ts";
import { RawClient } from "./raw_client.ts";

const TOPIC = "tail";

/** A broker whose logs share a 1 MiB tail-cache budget: chunks leave it all the time. */
function smallCacheServer(dataDir: string): Promise<SluiceServer> {
  return SluiceServer.start({
    dataDir,
    port: 0,
    log: () => undefined,
    engineOptions: { tailCacheTotalBytes: 1024 * 1024 },
  });
}

/** Reads until RECORDS records came, checking each against what was produced. */
async function tail(port: number, maxBytes: number): Promise<number> {
  const consumer = new Consumer({ port, maxWaitMs: 200, minBytes: 1, maxBytes });
  consumer.assign([{ topic: TOPIC, partition: 0, offset: 0 }]);
  let next = 0;
  try {
    for (let polls = 0; next < RECORDS && polls < 200_000; polls++) {
      for (const record of await consumer.poll({ maxWaitMs: 200 })) {
        assert.equal(record.offset, next, "every record once, in order");
        assert.deepEqual(record.value, recordValue(next), `record ${next} as produced`);
        next++;
      }
    }
    return next;
  } finally {
    await consumer.close();
  }
}

describe("tail-cache chunks lent to fetch answers", () => {
  test("tailing consumers get every byte as produced while chunks are reused", async () => {
    using dir = tempDir();
    const server = await smallCacheServer(dir.path);
    try {
      const admin = new Admin({ port: server.port });
      await admin.createTopics([{ name: TOPIC, partitions: 1, config: { fsync: "never" } }]);
      await admin.close();
      const readers = [tail(server.port, 1024 * 1024), tail(server.port, 3 * RECORD_BYTES)];
      await produceRecords(server.port, TOPIC);
      assert.deepEqual(await Promise.all(readers), [RECORDS, RECORDS]);
    } finally {
      await server.close();
    }
  });

  test("answers waiting in the outbox keep their chunk until the socket takes them", async () => {
    using dir = tempDir();
    const server = await smallCacheServer(dir.path);
    const client = await RawClient.connect(server.port);
    try {
      await server.engine.createTopic(TOPIC, { config: { fsync: "never" } });
      // ~600 KiB: every batch in the log's first chunk.
      const FIRST = 300;
      for (let i = 0; i < FIRST; i++) await server.engine.append(TOPIC, 0, batchOf(i));
      await client.handshake();
      client.socket.pause();
      const ids: number[] = [];
      for (let i = 0; i < 64; i++) {
        ids.push(
          client.request(API.Fetch, (w) =>
            writeFetchRequest(w, {
              maxWaitMs: 0,
              minBytes: 1,
              maxBytes: 1024 * 1024,
              topics: [
                {
                  topic: TOPIC,
                  partitions: [{ partition: 0, fetchOffset: 0, partitionMaxBytes: 1024 * 1024 }],
                },
              ],
            }),
          ),
        );
      }
      await waitFor(
        () => (server.stats()["queuedResponseBytes"] as number) > 4 * 1024 * 1024,
        "answers queued behind the unread socket",
      );
      // The tail cache moves past the first chunk many times over; the answers queued hold
      // views of it, and a chunk taken up again would be overwritten under them.
      for (let i = FIRST; i < FIRST + 4_000; i++) await server.engine.append(TOPIC, 0, batchOf(i));
      client.socket.resume();
      for (const id of ids) {
        const { errorCode, reader } = await client.response(id);
        assert.equal(errorCode, 0);
        const [partition] = readFetchResponse(reader.raw(reader.remaining)).topics[0]!.partitions;
        assert.equal(partition!.errorCode, 0);
        assertFirstRecords(partition!.records, FIRST);
      }
    } finally {
      client.close();
      await server.close();
    }
  });
});
