// Conformance of the Kafka schema's flexible versions against @platformatic/kafka's own codecs
// (one module per API version, like kafkajs'): requests built by its `createRequest` decode in
// sluice with every byte read, and sluice's answers parse with its `parseResponse`, which also
// reads every byte. kafkajs
// (codec_oracle.test.ts) never speaks a flexible version; this covers that half.

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { pathToFileURL } from "node:url";
import { encodeRecordBatch } from "../../../engine/mod.ts";
import {
  codecFor,
  concatChunks,
  KafkaReader,
  KafkaWriter,
  MESSAGES,
  type Struct,
} from "../../../protocol/kafka/mod.ts";
import { apiVersionsBody } from "../../../protocol/kafka/versions.ts";

const require = createRequire(import.meta.url);
const DIST = dirname(require.resolve("@platformatic/kafka"));

type PlatformaticApi = {
  createRequest(...args: unknown[]): { buffer: Uint8Array };
  parseResponse(correlationId: number, apiKey: number, version: number, reader: unknown): unknown;
};

const ID = new Uint8Array(16).fill(7);
const utf8 = new TextEncoder();
const batch = encodeRecordBatch([{ key: utf8.encode("k"), value: utf8.encode("v") }]);

const CASES: { key: number; version: number; module: string; args: unknown[]; answer: Struct }[] = [
  {
    key: 18,
    version: 3,
    module: "metadata/api-versions-v3",
    args: ["sluice-test", "1.0"],
    answer: apiVersionsBody(new Map()),
  },
  ...[9, 10, 11, 12].map((version) => ({
    key: 3,
    version,
    module: `metadata/metadata-v${version}`,
    args: [["a"], true, false],
    answer: {
      brokers: [{ nodeId: 0, host: "127.0.0.1", port: 9092, rack: null }],
      clusterId: "sluice",
      controllerId: 0,
      topics: [
        {
          errorCode: 0,
          name: "a",
          topicId: ID,
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
  })),
  {
    key: 10,
    version: 4,
    module: "metadata/find-coordinator-v4",
    args: [0, ["g"]],
    answer: {
      coordinators: [
        { key: "g", nodeId: 0, host: "127.0.0.1", port: 9092, errorCode: 0, errorMessage: null },
      ],
    },
  },
  {
    key: 12,
    version: 4,
    module: "consumer/heartbeat-v4",
    args: ["g", 1, "m", null],
    answer: { errorCode: 0 },
  },
  {
    key: 13,
    version: 4,
    module: "consumer/leave-group-v4",
    args: ["g", [{ memberId: "m", groupInstanceId: null }]],
    answer: { errorCode: 0, members: [{ memberId: "m", groupInstanceId: null, errorCode: 0 }] },
  },
  {
    key: 11,
    version: 6,
    module: "consumer/join-group-v6",
    args: [
      "g",
      10_000,
      20_000,
      "",
      null,
      "consumer",
      [{ name: "roundrobin", metadata: Buffer.from([1]) }],
      null,
    ],
    answer: {
      errorCode: 0,
      generationId: 1,
      protocolName: "roundrobin",
      leader: "m",
      memberId: "m",
      members: [{ memberId: "m", groupInstanceId: null, metadata: Uint8Array.from([1]) }],
    },
  },
  {
    key: 14,
    version: 4,
    module: "consumer/sync-group-v4",
    args: ["g", 1, "m", null, null, null, [{ memberId: "m", assignment: Buffer.from([2]) }]],
    answer: { errorCode: 0, assignment: Uint8Array.from([2]) },
  },
  ...[8, 9].map((version) => ({
    key: 8,
    version,
    module: `consumer/offset-commit-v${version}`,
    args: [
      "g",
      1,
      "m",
      null,
      [
        {
          name: "t",
          partitions: [
            {
              partitionIndex: 0,
              committedOffset: 7n,
              committedLeaderEpoch: -1,
              committedMetadata: null,
            },
          ],
        },
      ],
    ],
    answer: { topics: [{ name: "t", partitions: [{ partitionIndex: 0, errorCode: 0 }] }] },
  })),
  ...[8, 9].map((version) => ({
    key: 9,
    version,
    module: `consumer/offset-fetch-v${version}`,
    args: [
      [
        {
          groupId: "g",
          memberId: null,
          memberEpoch: -1,
          topics: [{ name: "t", partitionIndexes: [0] }],
        },
      ],
      false,
    ],
    answer: {
      groups: [
        {
          groupId: "g",
          topics: [
            {
              name: "t",
              partitions: [{ partitionIndex: 0, committedOffset: 7, metadata: "", errorCode: 0 }],
            },
          ],
          errorCode: 0,
        },
      ],
    },
  })),
  {
    key: 19,
    version: 7,
    module: "admin/create-topics-v7",
    args: [
      [{ name: "t", numPartitions: 3, replicationFactor: 1, assignments: [], configs: [] }],
      1000,
      false,
    ],
    answer: {
      topics: [
        {
          name: "t",
          topicId: ID,
          errorCode: 0,
          errorMessage: null,
          numPartitions: 3,
          replicationFactor: 1,
          configs: null,
        },
      ],
    },
  },
  {
    key: 20,
    version: 6,
    module: "admin/delete-topics-v6",
    args: [[{ name: "t", topicId: null }], 1000],
    answer: { responses: [{ name: "t", topicId: ID, errorCode: 0, errorMessage: null }] },
  },
  {
    key: 22,
    version: 4,
    module: "producer/init-producer-id-v4",
    args: [null, 1000, -1n, -1],
    answer: { errorCode: 0, producerId: 5, producerEpoch: 0 },
  },
  {
    key: 2,
    version: 6,
    module: "consumer/list-offsets-v6",
    args: [
      -1,
      0,
      [{ name: "t", partitions: [{ partitionIndex: 0, currentLeaderEpoch: -1, timestamp: -1n }] }],
    ],
    answer: {
      topics: [
        { name: "t", partitions: [{ partitionIndex: 0, errorCode: 0, timestamp: -1, offset: 3 }] },
      ],
    },
  },
  {
    key: 1,
    version: 12,
    module: "consumer/fetch-v12",
    args: [
      100,
      1,
      1000,
      0,
      0,
      -1,
      [
        {
          topicId: "t",
          partitions: [
            {
              partition: 0,
              currentLeaderEpoch: -1,
              fetchOffset: 0n,
              lastFetchedEpoch: -1,
              partitionMaxBytes: 1000,
            },
          ],
        },
      ],
      [],
      "",
    ],
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
              abortedTransactions: null,
              records: [batch],
            },
          ],
        },
      ],
    },
  },
  {
    key: 0,
    version: 9,
    module: "producer/produce-v9",
    args: [
      1,
      1000,
      [{ topic: "t", partition: 0, key: Buffer.from("k"), value: Buffer.from("v") }],
      {},
    ],
    answer: {
      responses: [
        {
          name: "t",
          partitions: [
            { index: 0, errorCode: 0, baseOffset: 4, logStartOffset: 0, errorMessage: null },
          ],
        },
      ],
    },
  },
  ...[0, 1].map((version) => ({
    key: 68,
    version,
    module: `consumer/consumer-group-heartbeat-v${version}`,
    args: ["g", "m", 0, null, null, 30_000, ["t"], null, null, []],
    answer: {
      errorCode: 0,
      errorMessage: null,
      memberId: "m",
      memberEpoch: 1,
      heartbeatIntervalMs: 3000,
      assignment: { topicPartitions: [{ topicId: ID, partitions: [0, 1] }] },
    },
  })),
  {
    key: 15,
    version: 5,
    module: "admin/describe-groups-v5",
    args: [["g"], false],
    answer: {
      groups: [
        {
          errorCode: 0,
          groupId: "g",
          groupState: "Stable",
          protocolType: "consumer",
          protocolData: "r",
          members: [],
        },
      ],
    },
  },
  {
    key: 16,
    version: 4,
    module: "admin/list-groups-v4",
    args: [[], []],
    answer: {
      errorCode: 0,
      groups: [{ groupId: "g", protocolType: "consumer", groupState: "Stable" }],
    },
  },
  {
    key: 32,
    version: 4,
    module: "admin/describe-configs-v4",
    args: [[{ resourceType: 2, resourceName: "t", configurationKeys: null }], false, false],
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
              value: "1",
              readOnly: false,
              configSource: 1,
              isSensitive: false,
              synonyms: [],
              configType: 0,
              documentation: null,
            },
          ],
        },
      ],
    },
  },
  {
    key: 60,
    version: 0,
    module: "admin/describe-cluster-v0",
    args: [false, 1],
    answer: {
      errorCode: 0,
      errorMessage: null,
      clusterId: "sluice",
      controllerId: 0,
      brokers: [{ brokerId: 0, host: "127.0.0.1", port: 9092, rack: null }],
    },
  },
];

describe("kafka codecs against @platformatic/kafka's", () => {
  for (const c of CASES) {
    const message = MESSAGES.get(c.key)!;
    test(`${message.name} v${c.version}: its request decodes, sluice's answer parses`, async () => {
      const url = pathToFileURL(join(DIST, "apis", `${c.module}.js`)).href;
      const api = (await import(url)) as PlatformaticApi;
      const { Reader } = (await import(pathToFileURL(join(DIST, "protocol/reader.js")).href)) as {
        Reader: { from(buffer: Buffer): { remaining: number } };
      };
      const body = new Uint8Array(api.createRequest(...c.args).buffer);
      const reader = new KafkaReader(body);
      codecFor(message, c.version).request.decode(reader);
      assert.equal(reader.remaining, 0, `${message.name} v${c.version}: every request byte read`);
      const writer = new KafkaWriter();
      codecFor(message, c.version).response.encode(writer, c.answer);
      const raw = Buffer.from(concatChunks(writer.finish()));
      const answerReader = Reader.from(raw);
      const parsed = api.parseResponse(1, c.key, c.version, answerReader);
      assert.ok(parsed !== undefined && parsed !== null);
      assert.equal(
        answerReader.remaining,
        0,
        `${message.name} v${c.version}: every answer byte read`,
      );
    });
  }
});
