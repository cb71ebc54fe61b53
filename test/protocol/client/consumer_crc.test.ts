// The consumer checks each fetched batch's CRC-32C (Kafka's check.crcs), unless told not to,
// and moves its positions by batch headers so the next fetch goes out before decoding: a batch
// that then fails to decode puts its partition back, and no record is lost or repeated.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeRecordBatch } from "../../../engine/mod.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { Consumer, type ConsumerRecord } from "../../../protocol/client/consumer.ts";
import { nextOffsetFromHeaders, recordsFrom } from "../../../protocol/client/consumer_fetch.ts";
import { isSluiceError } from "../../../record/mod.ts";
import { mulberry32, waitFor } from "../../helpers.ts";
import { FakeServer } from "./fake_server.ts";

const utf8 = new TextEncoder();
const text = new TextDecoder();

const batchOf = (values: string[]) =>
  encodeRecordBatch(values.map((value) => ({ value: utf8.encode(value), timestamp: 1 })));

/** A batch whose last record's value has one bit flipped: the header parses, the CRC fails. */
function rottenBatch(values: string[]): Uint8Array {
  const bytes = batchOf(values);
  bytes[bytes.length - 2]! ^= 0x01;
  return bytes;
}

async function withServer(run: (server: FakeServer) => Promise<void>): Promise<void> {
  const server = await FakeServer.start();
  server.createTopic("t", 2);
  try {
    await run(server);
  } finally {
    await server.close();
  }
}

function consumerOf(server: FakeServer, options: { checkCrcs?: boolean } = {}): Consumer {
  const consumer = new Consumer({ port: server.port, maxWaitMs: 20, ...options });
  consumer.assign([
    { topic: "t", partition: 0, offset: 0 },
    { topic: "t", partition: 1, offset: 0 },
  ]);
  return consumer;
}

const described = (records: ConsumerRecord[]) =>
  records.map((r) => `${r.partition}:${r.offset}:${text.decode(r.value!)}`);

async function pollError(consumer: Consumer): Promise<unknown> {
  try {
    await consumer.poll();
    return undefined;
  } catch (error) {
    return error;
  }
}

describe("Consumer batch CRC checks", () => {
  test("a batch failing its CRC is refused by default and read with checkCrcs false", () =>
    withServer(async (server) => {
      server.appendTo("t", 0, rottenBatch(["a", "b"]));
      const checking = consumerOf(server);
      try {
        const error = await pollError(checking);
        assert.ok(isSluiceError(error), `a typed error: ${String(error)}`);
        assert.match(error.message, /CRC/);
        // The fetch sent ahead asked past the damage: its results are dropped, and a later
        // poll reads the damaged batch again.
        let again: unknown;
        for (let poll = 0; poll < 20 && again === undefined; poll++) {
          again = await pollError(checking);
        }
        assert.equal((again as Error).message, error.message, "the partition stays there");
      } finally {
        await checking.close();
      }
      const trusting = consumerOf(server, { checkCrcs: false });
      try {
        const records: ConsumerRecord[] = [];
        await waitFor(async () => {
          records.push(...(await trusting.poll()));
          return records.length >= 2;
        }, "two records");
        assert.deepEqual(
          records.map((r) => r.offset),
          [0, 1],
        );
      } finally {
        await trusting.close();
      }
      assert.throws(() => new Consumer({ checkCrcs: "no" as unknown as boolean }), {
        name: "TypeError",
        message: /checkCrcs no/,
      });
    }));

  test("a corrupt batch: records before it and elsewhere come once, then its error", () =>
    withServer(async (server) => {
      server.appendTo("t", 0, batchOf(["a"]));
      server.appendTo("t", 0, rottenBatch(["b"]));
      server.appendTo("t", 1, batchOf(["x", "y"]));
      const consumer = consumerOf(server);
      try {
        const seen: string[] = [];
        let failures = 0;
        for (let poll = 0; poll < 50 && (seen.length < 3 || failures < 2); poll++) {
          try {
            seen.push(...described(await consumer.poll()));
          } catch (error) {
            assert.ok(isSluiceError(error), String(error));
            failures++;
          }
        }
        // Records before the damage and of the other partition, each exactly once.
        assert.deepEqual(seen.sort(), ["0:0:a", "1:0:x", "1:1:y"]);
        assert.ok(failures >= 2, "every read of the damaged batch fails; none skips it");
      } finally {
        await consumer.close();
      }
    }));
});

describe("positions from batch headers", () => {
  test("the next fetch goes out before the records of this one are decoded", () =>
    withServer(async (server) => {
      server.appendTo("t", 0, rottenBatch(["a"]));
      let fetches = 0;
      server.hook = (request) => {
        if (request.apiKey === API.Fetch) fetches++;
        return false;
      };
      const consumer = consumerOf(server);
      try {
        // The poll fails in decoding, so it sends nothing after: the second fetch can only be
        // the one sent once the headers gave the positions, before decoding.
        const error = await pollError(consumer);
        assert.ok(isSluiceError(error), String(error));
        await waitFor(() => fetches >= 2, "the fetch sent ahead of decoding", 2000);
      } finally {
        await consumer.close();
      }
    }));

  test("the offset after the whole batches matches decoding, for any cut of the bytes", () => {
    const random = mulberry32(16);
    const batches: Uint8Array[] = [];
    let base = 0;
    for (let i = 0; i < 12; i++) {
      const count = 1 + Math.floor(random() * 4);
      const values = Array.from({ length: count }, () => "v".repeat(Math.floor(random() * 300)));
      const bytes = batchOf(values);
      new DataView(bytes.buffer, bytes.byteOffset).setBigInt64(0, BigInt(base));
      base += count;
      batches.push(bytes);
    }
    const all = new Uint8Array(batches.reduce((n, b) => n + b.length, 0));
    let at = 0;
    for (const bytes of batches) {
      all.set(bytes, at);
      at += bytes.length;
    }
    for (let trial = 0; trial < 200; trial++) {
      const end = Math.floor(random() * (all.length + 1));
      const cutAt = Math.floor(random() * (end + 1));
      const pieces = [all.slice(0, cutAt), all.slice(cutAt, end)];
      const expected = recordsFrom("t", 0, 0, pieces).nextOffset;
      assert.equal(nextOffsetFromHeaders(0, pieces), expected, `end ${end}, cut ${cutAt}`);
    }
    assert.equal(nextOffsetFromHeaders(7, new Uint8Array(10)), 7, "too short: no move");
  });
});
