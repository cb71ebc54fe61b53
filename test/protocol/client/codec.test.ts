// The client's pure parts, no server needed: Kafka's murmur2 and the partitioner, the batch
// size arithmetic and fetch decoding. (The frame reader fed every split of a byte stream is
// tested with the codec: ../codec/frame_reader.test.ts.)

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { describe, test } from "node:test";
import { encodeRecordBatch } from "../../../engine/mod.ts";
import { varlongSize } from "../../../record/mod.ts";
import { BatchBuilder, prepareRecord } from "../../../protocol/client/batch_builder.ts";
import {
  buildFetchRequest,
  consumerDecodeOptions,
  fetchRequestBytesFor,
  newPartitionState,
  recordsFrom,
  recordsUntilDamage,
  writeFetchRequestFor,
} from "../../../protocol/client/consumer_fetch.ts";
import { writeFetchRequest } from "../../../protocol/codec/fetch.ts";
import { Writer } from "../../../protocol/codec/wire.ts";
import {
  DefaultPartitioner,
  murmur2,
  partitionForKey,
  toPositive,
} from "../../../protocol/client/partitioner.ts";

const utf8 = new TextEncoder();

/** A small seeded PRNG (mulberry32): failures replay from the seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

describe("murmur2", () => {
  test("matches Kafka's Utils.murmur2 test vectors", () => {
    // From Kafka's UtilsTest.testMurmur2.
    const vectors: [string, number][] = [
      ["21", -973932308],
      ["foobar", -790332482],
      ["a-little-bit-long-string", -985981536],
      ["a-little-bit-longer-string", -1486304829],
      ["lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971],
      ["abc", 479470107],
    ];
    for (const [key, hash] of vectors) assert.equal(murmur2(utf8.encode(key)), hash, key);
  });

  test("matches the values kafkajs generated with the Java client", () => {
    const vectors: [string, number][] = [
      ["0", 971027396],
      ["1", -1993445489],
      ["12", 126087238],
      ["123", -267702483],
      ["1234", -1614185708],
      ["12345", -1188365604],
      ["128", -326012175],
      ["2187", -1508407203],
      ["16384", -325739742],
      ["78125", -1654490814],
      ["279936", 1462227128],
      ["823543", -2014198330],
      ["2097152", 607668903],
      ["4782969", -1182699775],
      ["10000000", -1830336757],
      ["19487171", -1603849305],
      ["35831808", -857013643],
      ["62748517", -1167431028],
      ["105413504", -381294639],
      ["170859375", -1658323481],
      ["100:48069", 1009543857],
    ];
    for (const [key, hash] of vectors) assert.equal(murmur2(utf8.encode(key)), hash, key);
  });

  test("agrees with kafkajs's implementation on random bytes of every tail length", () => {
    const require = createRequire(import.meta.url);
    const kafkajsMurmur2 = require("kafkajs/src/producer/partitioners/default/murmur2.js") as (
      key: Uint8Array,
    ) => number;
    const random = prng(42);
    for (let i = 0; i < 500; i++) {
      const key = new Uint8Array(Math.floor(random() * 40));
      for (let j = 0; j < key.length; j++) key[j] = Math.floor(random() * 256);
      assert.equal(murmur2(key), kafkajsMurmur2(Buffer.from(key)), `key ${key.join(",")}`);
    }
  });

  test("toPositive clears the sign bit as Kafka does, including at -2^31", () => {
    assert.equal(toPositive(-1), 0x7fff_ffff);
    assert.equal(toPositive(-(2 ** 31)), 0);
    assert.equal(toPositive(12345), 12345);
    // "foobar" hashes to -790332482: positive 1357151166, partition 6 of 10.
    assert.equal(partitionForKey(utf8.encode("foobar"), 10), 6);
    assert.equal(partitionForKey(utf8.encode("21"), 7), (2 ** 31 - 973932308) % 7);
  });
});

describe("DefaultPartitioner", () => {
  test("a keyed record always goes to murmur2(key) modulo the partition count", () => {
    const partitioner = new DefaultPartitioner();
    for (const key of ["a", "user-17", "100:48069"]) {
      const bytes = utf8.encode(key);
      const expected = partitionForKey(bytes, 12);
      for (let i = 0; i < 3; i++) assert.equal(partitioner.partition("t", bytes, 12), expected);
    }
  });

  test("keyless records stick to one partition until its batch is sealed, then move on", () => {
    const partitioner = new DefaultPartitioner(() => 0.5);
    const first = partitioner.partition("t", null, 4);
    assert.equal(first, 2);
    assert.equal(partitioner.partition("t", null, 4), 2);
    partitioner.batchSealed("t", 1); // another partition's batch: no move
    assert.equal(partitioner.partition("t", null, 4), 2);
    const seen: number[] = [];
    for (let i = 0; i < 4; i++) {
      partitioner.batchSealed("t", partitioner.partition("t", null, 4));
      seen.push(partitioner.partition("t", null, 4));
    }
    assert.deepEqual(seen, [3, 0, 1, 2]);
    // Topics keep their own sticky partition.
    assert.equal(partitioner.partition("other", null, 3), 1);
  });
});

describe("batch size arithmetic", () => {
  test("the varint sizes the builder counts match the encoding's boundaries", () => {
    assert.equal(varlongSize(0), 1);
    assert.equal(varlongSize(-64), 1);
    assert.equal(varlongSize(63), 1);
    assert.equal(varlongSize(64), 2);
    assert.equal(varlongSize(-65), 2);
    assert.equal(varlongSize(2 ** 31 - 1), 5);
    assert.equal(varlongSize(-(2 ** 31)), 5);
    assert.equal(varlongSize(2 ** 40), 6);
  });

  test("the builder writes encodeRecordBatch's bytes and never passes batchBytesMax", () => {
    const random = prng(7);
    const bytes = (n: number) => new Uint8Array(n).map(() => Math.floor(random() * 256));
    for (let round = 0; round < 40; round++) {
      const batchBytesMax = 200 + Math.floor(random() * 20_000);
      const open = () => ({
        builder: new BatchBuilder<number>(batchBytesMax, 0, { prefixRoomBytes: 40 }),
        records: [] as ReturnType<typeof prepareRecord>[],
      });
      let batch = open();
      const sealed: (typeof batch)[] = [];
      for (let i = 0; i < 300; i++) {
        const record = prepareRecord(
          {
            key: random() < 0.3 ? null : bytes(Math.floor(random() * 20)),
            value: random() < 0.05 ? null : bytes(Math.floor(random() * (batchBytesMax / 8))),
            headers: random() < 0.2 ? { trace: bytes(5), é: null } : undefined,
            timestamp: 1_700_000_000_000 + Math.floor((random() - 0.3) * 10 ** (random() * 9)),
          },
          0,
        );
        if (record.sizeBytes > batchBytesMax) continue;
        if (!batch.builder.tryAddRecord(record, i)) {
          assert.ok(batch.builder.count > 0);
          sealed.push(batch);
          batch = open();
          assert.ok(batch.builder.tryAddRecord(record, i));
        }
        batch.records.push(record);
      }
      sealed.push(batch);
      for (const { builder, records } of sealed) {
        const size = builder.sizeBytes;
        const encoded = encodeRecordBatch(records, { producerId: 5, baseSequence: 9 });
        const stamped = builder.stamp({ producerId: 5, producerEpoch: -1, baseSequence: 9 });
        assert.equal(encoded.length, size, `round ${round}`);
        assert.deepEqual(stamped, encoded, `round ${round}`);
        assert.ok(encoded.length <= batchBytesMax, `${encoded.length} > ${batchBytesMax}`);
      }
    }
  });

  test("a batch takes records until the next one would not fit", () => {
    const value = new Uint8Array(100);
    const record = prepareRecord({ value }, 1000);
    // 61-byte header; a record: attributes, two deltas, key -1, value length (zigzag 200: two
    // bytes), value, header count = 107 bytes, after a length varint (zigzag 214: two bytes).
    const perRecord = 2 + (1 + 1 + 1 + 1 + 2 + 100 + 1);
    assert.equal(record.sizeBytes, 61 + perRecord);
    const builder = new BatchBuilder<number>(61 + 3 * perRecord, 0);
    assert.ok(builder.tryAddRecord(record, 0));
    assert.ok(builder.tryAddRecord(record, 1));
    assert.ok(builder.tryAddRecord(record, 2));
    assert.equal(builder.tryAddRecord(record, 3), false);
    assert.equal(builder.sizeBytes, 61 + 3 * perRecord);
  });
});

describe("fetch decoding", () => {
  const batch = (baseOffset: number, values: string[], control = false) =>
    encodeRecordBatch(
      values.map((v) => ({ value: utf8.encode(v) })),
      { baseOffset, timestamp: 1_000, control },
    );
  const join = (...parts: Uint8Array[]) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const part of parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  };
  const text = new TextDecoder();

  test("records below the fetch offset are skipped; the position moves past the last batch", () => {
    const bytes = join(batch(10, ["a", "b", "c", "d", "e"]), batch(15, ["f", "g", "h"]));
    const { records, nextOffset } = recordsFrom("t", 2, 12, bytes);
    assert.deepEqual(
      records.map((r) => [r.offset, text.decode(r.value!)]),
      [
        [12, "c"],
        [13, "d"],
        [14, "e"],
        [15, "f"],
        [16, "g"],
        [17, "h"],
      ],
    );
    assert.equal(records[0]!.topic, "t");
    assert.equal(records[0]!.partition, 2);
    assert.equal(records[0]!.timestamp, 1_000);
    assert.equal(nextOffset, 18);
  });

  test("a partition's decode options, made once, decode as a call without them does", () => {
    const bytes = join(batch(10, ["a", "b", "c"]), batch(13, ["marker"], true), batch(14, ["d"]));
    const options = consumerDecodeOptions("t", 2, { checkCrc: true });
    for (let end = 0; end <= bytes.length; end++) {
      const cut = bytes.subarray(0, end);
      const fresh = recordsUntilDamage("t", 2, 11, cut, { checkCrc: true });
      for (const views of [cut, [cut], [cut.subarray(0, end >> 1), cut.subarray(end >> 1)]]) {
        const reused = recordsUntilDamage("t", 2, 11, views, options);
        assert.deepEqual(reused, fresh, `cut at ${end}`);
      }
    }
    const { records } = recordsUntilDamage("t", 2, 0, bytes, options);
    assert.deepEqual(
      records.map((r) => [r.topic, r.partition, r.offset]),
      [
        ["t", 2, 10],
        ["t", 2, 11],
        ["t", 2, 12],
        ["t", 2, 14],
      ],
    );
  });

  test("a batch cut short at the end is left for the next fetch", () => {
    const whole = batch(0, ["a", "b"]);
    const cut = batch(2, ["c", "d"]).subarray(0, 30);
    const { records, nextOffset } = recordsFrom("t", 0, 0, join(whole, cut));
    assert.equal(records.length, 2);
    assert.equal(nextOffset, 2);
  });

  test("control records are not delivered but their offsets are passed", () => {
    const bytes = join(batch(0, ["a"]), batch(1, ["marker"], true), batch(2, ["b"]));
    const { records, nextOffset } = recordsFrom("t", 0, 0, bytes);
    assert.deepEqual(
      records.map((r) => r.offset),
      [0, 2],
    );
    assert.equal(nextOffset, 3);
  });

  test("an empty partition result leaves the position where it was", () => {
    assert.deepEqual(recordsFrom("t", 0, 42, new Uint8Array(0)), {
      records: [],
      nextOffset: 42,
    });
  });

  test("the fetch request lists partitions in the given order, grouped by topic", () => {
    const a0 = newPartitionState("a", 0, "earliest", false);
    const b1 = newPartitionState("b", 1, "earliest", false);
    const a3 = newPartitionState("a", 3, "earliest", false);
    a0.position = 5;
    b1.position = 6;
    a3.position = 7;
    const limits = { maxWaitMs: 100, minBytes: 1, maxBytes: 1000, partitionMaxBytes: 500 };
    assert.deepEqual(buildFetchRequest([a3, b1, a0], limits), {
      maxWaitMs: 100,
      minBytes: 1,
      maxBytes: 1000,
      topics: [
        {
          topic: "a",
          partitions: [
            { partition: 3, fetchOffset: 7, partitionMaxBytes: 500 },
            { partition: 0, fetchOffset: 5, partitionMaxBytes: 500 },
          ],
        },
        { topic: "b", partitions: [{ partition: 1, fetchOffset: 6, partitionMaxBytes: 500 }] },
      ],
    });
  });

  test("a fetch request written from partition states has the bytes of the built request", () => {
    const random = prng(1606);
    const topics = ["a", "topic-b", "c\u00e9"];
    for (let round = 0; round < 200; round++) {
      const states = [];
      const taken = new Set<string>();
      const count = 1 + Math.floor(random() * 80);
      for (let i = 0; i < count; i++) {
        const topic = topics[Math.floor(random() * topics.length)]!;
        const partition = Math.floor(random() * 100);
        if (taken.has(`${topic}/${partition}`)) continue;
        taken.add(`${topic}/${partition}`);
        const state = newPartitionState(topic, partition, "earliest", false);
        state.position = Math.floor(random() * 2 ** 40);
        states.push(state);
      }
      const limits = { maxWaitMs: 100, minBytes: 1, maxBytes: 1 << 20, partitionMaxBytes: 4096 };
      const built = new Writer();
      writeFetchRequest(built, buildFetchRequest(states, limits));
      const direct = new Writer();
      writeFetchRequestFor(direct, states, limits);
      assert.deepEqual(direct.finish(), built.finish(), `round ${round}`);
      assert.ok(fetchRequestBytesFor(states) >= direct.length, `round ${round}: size bound`);
    }
  });
});
