// Conformance of the Kafka schema against an independent implementation, for every version
// kafkajs 2.2.4 speaks within each advertised range: requests built by kafkajs' own encoders
// decode in sluice (every byte consumed), and sluice's answers parse with kafkajs' own
// response decoders. Plus fast-check round trips of every (api, version) sluice serves, and
// a seeded fuzzer that feeds every decoder cut and flipped bytes: it may only ever fail with
// a typed INVALID_REQUEST (ProtocolError), never anything else.

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { describe, test } from "node:test";
import fc from "fast-check";
import { decodeRecordBatch, encodeRecordBatch } from "../../../engine/mod.ts";
import { ProtocolError } from "../../../protocol/codec/errors.ts";
import {
  codecFor,
  concatChunks,
  type Field,
  KafkaReader,
  KafkaWriter,
  MESSAGES,
  type Struct,
} from "../../../protocol/kafka/mod.ts";
import { inVersions } from "../../../protocol/kafka/schema.ts";
import { apiVersionsBody } from "../../../protocol/kafka/versions.ts";
import { mulberry32 } from "../../helpers.ts";

const require = createRequire(import.meta.url);

type KafkajsApi = {
  versions: string[];
  protocol: (opts: { version: number }) => (args: unknown) => {
    request: { apiKey: number; apiVersion: number; encode(): Promise<{ buffer: Uint8Array }> };
    response: { decode(raw: Uint8Array): Promise<unknown>; parse(decoded: unknown): unknown };
  };
};

const utf8 = new TextEncoder();
const batch = encodeRecordBatch([{ key: utf8.encode("k"), value: utf8.encode("v") }]);

/** For each API: kafkajs' module, arguments for its request, and a sluice answer. */
const CASES: { key: number; module: string; args: unknown; answer: Struct }[] = [
  { key: 18, module: "apiVersions", args: {}, answer: apiVersionsBody(new Map()) },
  {
    key: 3,
    module: "metadata",
    args: { topics: ["a", "b"], allowAutoTopicCreation: true },
    answer: {
      brokers: [{ nodeId: 0, host: "127.0.0.1", port: 9092, rack: null }],
      clusterId: "sluice",
      controllerId: 0,
      topics: [
        {
          errorCode: 0,
          name: "a",
          isInternal: false,
          partitions: [
            {
              errorCode: 0,
              partitionIndex: 0,
              leaderId: 0,
              leaderEpoch: -1,
              replicaNodes: [0],
              isrNodes: [0],
              offlineReplicas: [],
            },
          ],
        },
      ],
    },
  },
  {
    key: 0,
    module: "produce",
    args: {
      acks: -1,
      timeout: 1000,
      compression: 0,
      producerId: -1,
      producerEpoch: 0,
      topicData: [
        {
          topic: "t",
          partitions: [{ partition: 0, firstSequence: 0, messages: [{ key: "k", value: "v" }] }],
        },
      ],
    },
    answer: {
      responses: [
        {
          name: "t",
          partitions: [
            { index: 0, errorCode: 0, baseOffset: 5, logStartOffset: 0, errorMessage: null },
          ],
        },
      ],
    },
  },
  {
    key: 1,
    module: "fetch",
    args: {
      replicaId: -1,
      maxWaitTime: 100,
      minBytes: 1,
      maxBytes: 1000,
      isolationLevel: 1,
      topics: [{ topic: "t", partitions: [{ partition: 0, fetchOffset: "5", maxBytes: 100 }] }],
    },
    answer: {
      responses: [
        {
          topic: "t",
          partitions: [
            {
              partitionIndex: 0,
              errorCode: 0,
              highWatermark: 1,
              lastStableOffset: 1,
              logStartOffset: 0,
              abortedTransactions: [],
              records: [batch],
            },
          ],
        },
      ],
    },
  },
  {
    key: 2,
    module: "listOffsets",
    args: {
      replicaId: -1,
      topics: [{ topic: "t", partitions: [{ partition: 0, timestamp: -1 }] }],
    },
    answer: {
      topics: [
        { name: "t", partitions: [{ partitionIndex: 0, errorCode: 0, timestamp: -1, offset: 9 }] },
      ],
    },
  },
  {
    key: 10,
    module: "findCoordinator",
    args: { groupId: "g", coordinatorType: 0 },
    answer: { errorCode: 0, errorMessage: null, nodeId: 0, host: "127.0.0.1", port: 9092 },
  },
  {
    key: 11,
    module: "joinGroup",
    args: {
      groupId: "g",
      sessionTimeout: 10_000,
      rebalanceTimeout: 20_000,
      memberId: "",
      protocolType: "consumer",
      groupProtocols: [{ name: "RoundRobinAssigner", metadata: Buffer.from([1, 2, 3]) }],
    },
    answer: {
      errorCode: 0,
      generationId: 1,
      protocolName: "RoundRobinAssigner",
      leader: "m",
      memberId: "m",
      members: [{ memberId: "m", groupInstanceId: null, metadata: Uint8Array.from([1, 2, 3]) }],
    },
  },
  {
    key: 14,
    module: "syncGroup",
    args: {
      groupId: "g",
      generationId: 1,
      memberId: "m",
      groupAssignment: [{ memberId: "m", memberAssignment: Buffer.from([4, 5]) }],
    },
    answer: { errorCode: 0, assignment: Uint8Array.from([4, 5]) },
  },
  {
    key: 12,
    module: "heartbeat",
    args: { groupId: "g", groupGenerationId: 1, memberId: "m" },
    answer: { errorCode: 0 },
  },
  {
    key: 13,
    module: "leaveGroup",
    args: { groupId: "g", memberId: "m" },
    answer: { errorCode: 0, members: [{ memberId: "m", groupInstanceId: null, errorCode: 0 }] },
  },
  {
    key: 8,
    module: "offsetCommit",
    args: {
      groupId: "g",
      groupGenerationId: 1,
      memberId: "m",
      retentionTime: -1,
      topics: [{ topic: "t", partitions: [{ partition: 0, offset: "7" }] }],
    },
    answer: { topics: [{ name: "t", partitions: [{ partitionIndex: 0, errorCode: 0 }] }] },
  },
  {
    key: 9,
    module: "offsetFetch",
    args: { groupId: "g", topics: [{ topic: "t", partitions: [{ partition: 0 }] }] },
    answer: {
      topics: [
        {
          name: "t",
          partitions: [{ partitionIndex: 0, committedOffset: 7, metadata: "", errorCode: 0 }],
        },
      ],
      errorCode: 0,
    },
  },
  {
    key: 19,
    module: "createTopics",
    args: {
      topics: [
        {
          topic: "t",
          numPartitions: 3,
          replicationFactor: 1,
          configEntries: [{ name: "retention.ms", value: "1000" }],
        },
      ],
      validateOnly: false,
      timeout: 1000,
    },
    answer: { topics: [{ name: "t", errorCode: 0, errorMessage: null }] },
  },
  {
    key: 20,
    module: "deleteTopics",
    args: { topics: ["t"], timeout: 1000 },
    answer: { responses: [{ name: "t", errorCode: 0 }] },
  },
  {
    key: 22,
    module: "initProducerId",
    args: { transactionalId: null, transactionTimeout: 5000 },
    answer: { errorCode: 0, producerId: 12, producerEpoch: 0 },
  },
  {
    key: 15,
    module: "describeGroups",
    args: { groupIds: ["g"] },
    answer: {
      groups: [
        {
          errorCode: 0,
          groupId: "g",
          groupState: "Stable",
          protocolType: "consumer",
          protocolData: "RoundRobinAssigner",
          members: [
            {
              memberId: "m",
              groupInstanceId: null,
              clientId: "c",
              clientHost: "/127.0.0.1",
              memberMetadata: new Uint8Array(0),
              memberAssignment: new Uint8Array(0),
            },
          ],
        },
      ],
    },
  },
  {
    key: 16,
    module: "listGroups",
    args: {},
    answer: { errorCode: 0, groups: [{ groupId: "g", protocolType: "consumer" }] },
  },
  {
    key: 32,
    module: "describeConfigs",
    args: {
      resources: [{ type: 2, name: "t", configNames: ["retention.ms"] }],
      includeSynonyms: false,
    },
    answer: {
      results: [
        {
          errorCode: 0,
          errorMessage: null,
          resourceType: 2,
          resourceName: "t",
          configs: [
            {
              name: "retention.ms",
              value: "1000",
              readOnly: false,
              isDefault: false,
              configSource: 1,
              isSensitive: false,
              synonyms: [],
            },
          ],
        },
      ],
    },
  },
];

function encodeAnswer(key: number, version: number, answer: Struct): Uint8Array {
  const writer = new KafkaWriter();
  codecFor(MESSAGES.get(key)!, version).response.encode(writer, answer);
  return concatChunks(writer.finish());
}

describe("kafka codecs against kafkajs 2.2.4", () => {
  for (const c of CASES) {
    const message = MESSAGES.get(c.key)!;
    const api = require(`kafkajs/src/protocol/requests/${c.module}/index.js`) as KafkajsApi;
    const versions = api.versions.map(Number).filter((v) => v >= message.min && v <= message.max);
    test(`${message.name} v${versions.join(",")}: requests decode, answers parse`, async () => {
      assert.ok(versions.length > 0, `kafkajs shares a version of ${message.name}`);
      for (const version of versions) {
        const { request, response } = api.protocol({ version })(c.args);
        assert.equal(request.apiKey, c.key);
        const body = (await request.encode()).buffer;
        const reader = new KafkaReader(new Uint8Array(body));
        const decoded = codecFor(message, version).request.decode(reader);
        assert.equal(reader.remaining, 0, `${message.name} v${version} request fully read`);
        if (c.key === 0 && version >= 3) {
          const records = ((decoded["topics"] as Struct[])[0]!["partitions"] as Struct[])[0]!;
          const stored = decodeRecordBatch(records["records"] as Uint8Array);
          assert.equal(new TextDecoder().decode(stored.records[0]!.value!), "v");
        }
        const raw = Buffer.from(encodeAnswer(c.key, version, c.answer));
        const parsed = await response.parse(await response.decode(raw));
        assert.ok(parsed !== undefined, `${message.name} v${version} answer parsed`);
        if (c.key === 1) {
          const partitions = (
            parsed as { responses: { partitions: { messages: { value: Buffer }[] }[] }[] }
          ).responses[0]!.partitions[0]!;
          assert.equal(partitions.messages[0]!.value.toString(), "v");
        }
      }
    });
  }
});

/** An arbitrary struct of `fields` at `version` (fields of other versions left out). */
function structArb(
  fields: readonly Field[],
  version: number,
  flexible: boolean,
): fc.Arbitrary<Struct> {
  const entries: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of fields) {
    if (!inVersions(field.versions, version)) continue;
    if (field.tag !== undefined && !flexible) continue;
    const nullable = inVersions(field.nullable, version);
    let arb = valueArb(field, version, flexible);
    if (nullable) arb = fc.option(arb, { nil: null });
    entries[field.name] = arb;
  }
  return fc.record(entries) as fc.Arbitrary<Struct>;
}

function primitiveArb(type: string): fc.Arbitrary<unknown> {
  switch (type) {
    case "int8":
      return fc.integer({ min: -128, max: 127 });
    case "int16":
      return fc.integer({ min: -32768, max: 32767 });
    case "uint16":
      return fc.integer({ min: 0, max: 65535 });
    case "int32":
      return fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
    case "int64":
      return fc.maxSafeInteger();
    case "float64":
      return fc.double({ noNaN: true });
    case "bool":
      return fc.boolean();
    case "string":
      return fc.string({ maxLength: 20 });
    case "uuid":
      return fc.uint8Array({ minLength: 16, maxLength: 16 });
    default:
      return fc.uint8Array({ maxLength: 40 });
  }
}

function valueArb(field: Field, version: number, flexible: boolean): fc.Arbitrary<unknown> {
  if (field.type === "[]") {
    return fc.array(structArb(field.fields ?? [], version, flexible), { maxLength: 3 });
  }
  if (field.type === "{}") return structArb(field.fields ?? [], version, flexible);
  if (field.type.startsWith("[]"))
    return fc.array(primitiveArb(field.type.slice(2)), { maxLength: 4 });
  return primitiveArb(field.type);
}

/** The decoded value in the shape it was generated in (record views as plain byte arrays). */
function normal(value: unknown): unknown {
  if (value instanceof Uint8Array) return [...value];
  if (Array.isArray(value)) return value.map(normal);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normal(v)]));
  }
  return value;
}

function pick(decoded: Struct, generated: Struct): unknown {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(generated)) {
    const got = decoded[name];
    if (
      Array.isArray(value) &&
      Array.isArray(got) &&
      value.length > 0 &&
      typeof value[0] === "object" &&
      !(value[0] instanceof Uint8Array)
    ) {
      out[name] = (got as Struct[]).map((item, i) => pick(item, value[i] as Struct));
    } else if (
      value !== null &&
      typeof value === "object" &&
      !Array.isArray(value) &&
      !(value instanceof Uint8Array)
    ) {
      out[name] = pick(got as Struct, value as Struct);
    } else out[name] = got;
  }
  return normal(out);
}

describe("kafka codecs round trip", () => {
  for (const message of MESSAGES.values()) {
    test(`${message.name} v${message.min}-${message.max} requests and answers round trip`, () => {
      for (let version = message.min; version <= message.max; version++) {
        const flexible = version >= message.flexible;
        const codec = codecFor(message, version);
        for (const [side, fields] of [
          ["request", message.request],
          ["response", message.response],
        ] as const) {
          fc.assert(
            fc.property(structArb(fields, version, flexible), (value) => {
              const writer = new KafkaWriter(8);
              codec[side].encode(writer, value);
              const reader = new KafkaReader(concatChunks(writer.finish()));
              const decoded = codec[side].decode(reader);
              assert.equal(reader.remaining, 0);
              assert.deepEqual(pick(decoded, value), normal(value));
            }),
            { numRuns: 40 },
          );
        }
      }
    });
  }
});

describe("kafka decoders under hostile bytes", () => {
  test("cut and flipped requests fail only with INVALID_REQUEST", () => {
    const seed = Number(process.env["SLUICE_FUZZ_SEED"] ?? 0x6b61666b);
    const random = mulberry32(seed);
    let failures = 0;
    for (const message of MESSAGES.values()) {
      for (let version = message.min; version <= message.max; version++) {
        const codec = codecFor(message, version);
        const sample = fc.sample(structArb(message.request, version, version >= message.flexible), {
          numRuns: 3,
          seed,
        });
        for (const value of sample) {
          const writer = new KafkaWriter();
          codec.request.encode(writer, value);
          const bytes = concatChunks(writer.finish());
          for (let round = 0; round < 30; round++) {
            const hostile = bytes.slice(0, Math.floor(random() * (bytes.length + 1)));
            for (let flips = Math.floor(random() * 4); flips > 0 && hostile.length > 0; flips--) {
              hostile[Math.floor(random() * hostile.length)] = Math.floor(random() * 256);
            }
            try {
              codec.request.decode(new KafkaReader(hostile));
            } catch (error) {
              assert.ok(error instanceof ProtocolError, `seed ${seed}: ${String(error)}`);
              assert.equal(error.code, "INVALID_REQUEST");
              failures++;
            }
          }
        }
      }
    }
    assert.ok(failures > 0, "some hostile inputs were refused");
  });
});
