// The Kafka listener's authorization matrix: every Kafka API × (no credentials, wrong
// password, authenticated without ACLs, authenticated with exactly the ACLs the API needs,
// those ACLs plus a deny rule), with Kafka's error codes (29 topic, 30 group, 31 cluster).
// The rows come from one table keyed by every API name, so an API added to messages.ts without
// a row here fails to compile, as does one without a rule in the listener's table (_authz.ts).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { encodeRecordBatch } from "../../../record/mod.ts";
import type { ClientConnection } from "../../../protocol/client/mod.ts";
import { API_KEYS as K, KAFKA_ERRORS as E, type Struct } from "../../../protocol/kafka/mod.ts";
import { KAFKA_AUTHORIZATION } from "../../../protocol/kafka/_authz.ts";
import type { Acl, Operation, ResourceType } from "../../../protocol/server/acl.ts";
import type { TestServer } from "../server/serving.ts";
import { alterAcl, clientAs, startSecureServer } from "../security/secure_server.ts";
import { RawKafka } from "./kafka_serving.ts";
import { kafkaAs, scramLogin } from "./kafka_sasl_client.ts";

type ApiName = keyof typeof K;
type OpenApi = "ApiVersions" | "SaslHandshake" | "SaslAuthenticate";

type Row = {
  version: number;
  body: Struct;
  /** Exactly the ACLs the API needs (resource type, name, operation; literal unless noted). */
  needs: [ResourceType, string, Operation, "prefixed"?][];
  /** The error code in the answer's slot for the resource checked (0 when served). */
  code: (answer: Struct) => number;
};

const batch = encodeRecordBatch([{ value: new TextEncoder().encode("v") }]);
const first = (answer: Struct, key: string): Struct => (answer[key] as Struct[])[0]!;
const firstPartition = (answer: Struct, key: string): Struct =>
  (first(answer, key)["partitions"] as Struct[])[0]!;
const top = (answer: Struct) => answer["errorCode"] as number;
const groupMember = { groupId: "g", generationId: 1, memberId: "m", groupInstanceId: null };

const ROWS: Record<Exclude<ApiName, OpenApi>, Row> = {
  Produce: {
    version: 7,
    body: {
      transactionalId: null,
      acks: 1,
      timeoutMs: 5000,
      topics: [{ name: "t", partitions: [{ index: 0, records: batch }] }],
    },
    needs: [["topic", "t", "write"]],
    code: (a) => firstPartition(a, "responses")["errorCode"] as number,
  },
  Fetch: {
    version: 11,
    body: {
      maxWaitMs: 0,
      minBytes: 0,
      maxBytes: 1 << 20,
      isolationLevel: 0,
      sessionId: 0,
      sessionEpoch: -1,
      topics: [
        { topic: "t", partitions: [{ partition: 0, fetchOffset: 0, partitionMaxBytes: 65536 }] },
      ],
      forgottenTopicsData: [],
      rackId: "",
    },
    needs: [["topic", "t", "read"]],
    code: (a) => firstPartition(a, "responses")["errorCode"] as number,
  },
  ListOffsets: {
    version: 3,
    body: {
      replicaId: -1,
      isolationLevel: 0,
      topics: [{ name: "t", partitions: [{ partitionIndex: 0, timestamp: -1 }] }],
    },
    needs: [["topic", "t", "describe"]],
    code: (a) => firstPartition(a, "topics")["errorCode"] as number,
  },
  Metadata: {
    version: 9,
    body: { topics: [{ name: "t" }], allowAutoTopicCreation: false },
    needs: [["topic", "t", "describe"]],
    code: (a) => first(a, "topics")["errorCode"] as number,
  },
  CreateTopics: {
    version: 4,
    body: {
      topics: [{ name: "new-one", numPartitions: 1, replicationFactor: 1 }],
      timeoutMs: 5000,
      validateOnly: true,
    },
    needs: [["topic", "new-", "create", "prefixed"]],
    code: (a) => first(a, "topics")["errorCode"] as number,
  },
  DeleteTopics: {
    version: 1,
    body: { topicNames: ["gone"], timeoutMs: 5000 },
    needs: [["topic", "gone", "delete"]],
    code: (a) => first(a, "responses")["errorCode"] as number,
  },
  DescribeConfigs: {
    version: 1,
    body: { resources: [{ resourceType: 2, resourceName: "t", configurationKeys: null }] },
    needs: [["topic", "t", "describe"]],
    code: (a) => first(a, "results")["errorCode"] as number,
  },
  DescribeCluster: {
    version: 0,
    body: { includeClusterAuthorizedOperations: false },
    needs: [["cluster", "cluster", "describe"]],
    code: top,
  },
  InitProducerId: {
    version: 1,
    body: { transactionalId: null, transactionTimeoutMs: -1 },
    needs: [["topic", "t", "write"]],
    code: top,
  },
  FindCoordinator: {
    version: 2,
    body: { key: "g", keyType: 0 },
    needs: [["group", "g", "describe"]],
    code: top,
  },
  JoinGroup: {
    version: 5,
    body: {
      groupId: "g",
      sessionTimeoutMs: 10_000,
      rebalanceTimeoutMs: 10_000,
      memberId: "",
      groupInstanceId: null,
      protocolType: "consumer",
      protocols: [{ name: "range", metadata: new Uint8Array(0) }],
    },
    needs: [["group", "g", "read"]],
    code: top,
  },
  SyncGroup: {
    version: 3,
    body: { ...groupMember, assignments: [] },
    needs: [["group", "g", "read"]],
    code: top,
  },
  Heartbeat: { version: 3, body: groupMember, needs: [["group", "g", "read"]], code: top },
  LeaveGroup: {
    version: 3,
    body: { groupId: "g", members: [{ memberId: "m", groupInstanceId: null }] },
    needs: [["group", "g", "read"]],
    code: top,
  },
  OffsetCommit: {
    version: 5,
    body: {
      groupId: "g",
      generationId: -1,
      memberId: "",
      topics: [
        {
          name: "t",
          partitions: [{ partitionIndex: 0, committedOffset: 0, committedMetadata: null }],
        },
      ],
    },
    needs: [
      ["group", "g", "read"],
      ["topic", "t", "read"],
    ],
    code: (a) => firstPartition(a, "topics")["errorCode"] as number,
  },
  OffsetFetch: {
    version: 4,
    body: { groupId: "g", topics: [{ name: "t", partitionIndexes: [0] }] },
    needs: [
      ["group", "g", "describe"],
      ["topic", "t", "describe"],
    ],
    code: (a) => (top(a) !== 0 ? top(a) : (firstPartition(a, "topics")["errorCode"] as number)),
  },
  DescribeGroups: {
    version: 3,
    body: { groups: ["g"], includeAuthorizedOperations: false },
    needs: [["group", "g", "describe"]],
    code: (a) => first(a, "groups")["errorCode"] as number,
  },
  // A listing leaves out what may not be described: "denied" is group g missing from it.
  ListGroups: {
    version: 2,
    body: {},
    needs: [["group", "g", "describe"]],
    code: (a) =>
      (a["groups"] as Struct[]).some((g) => g["groupId"] === "g")
        ? 0
        : E.GROUP_AUTHORIZATION_FAILED,
  },
  ConsumerGroupHeartbeat: {
    version: 0,
    body: {
      groupId: "h",
      memberId: "",
      memberEpoch: 0,
      instanceId: null,
      rackId: null,
      rebalanceTimeoutMs: 10_000,
      subscribedTopicNames: ["t"],
      serverAssignor: null,
      topicPartitions: [],
    },
    needs: [
      ["group", "h", "read"],
      ["topic", "t", "describe"],
    ],
    code: top,
  },
};

const DENIED: ReadonlySet<number> = new Set([
  E.TOPIC_AUTHORIZATION_FAILED,
  E.GROUP_AUTHORIZATION_FAILED,
  E.CLUSTER_AUTHORIZATION_FAILED,
]);

function aclsOf(principal: string, row: Row, permission: "allow" | "deny"): Acl[] {
  return row.needs.map(([resourceType, name, operation, pattern]) => ({
    principal,
    resourceType,
    name,
    pattern: pattern ?? "literal",
    operations: [operation],
    permission,
  }));
}

async function outcome(port: number, user: string, name: ApiName, row: Row): Promise<string> {
  const client = await kafkaAs(port, user);
  try {
    const code = row.code(await client.call(K[name], row.version, row.body));
    return DENIED.has(code) ? "denied" : "served";
  } finally {
    client.close();
  }
}

describe("kafka authorization matrix", () => {
  let served: TestServer;
  let admin: ClientConnection;
  let port: number;

  before(async () => {
    served = await startSecureServer(["admin", "bare", "exact", "denied"], {
      kafka: { port: 0, initialRebalanceDelayMs: 50 },
    });
    port = served.server.kafka!.port;
    admin = await clientAs(served.port, "admin");
    // Topic t, and group g with a committed offset, made through the Kafka port as superuser.
    const kafka = await kafkaAs(port, "admin");
    const create = {
      topics: [{ name: "t", numPartitions: 1, replicationFactor: 1 }],
      timeoutMs: 5000,
    };
    await kafka.call(K.CreateTopics, 4, create);
    const commit = await kafka.call(K.OffsetCommit, 5, ROWS.OffsetCommit.body);
    assert.equal(ROWS.OffsetCommit.code(commit), 0);
    kafka.close();
  });

  after(async () => {
    await admin.close();
    await served[Symbol.asyncDispose]();
  });

  test("every Kafka API has a rule in the listener's table and a row here", () => {
    for (const name of Object.keys(K) as ApiName[]) {
      assert.ok(KAFKA_AUTHORIZATION[name] !== undefined, `${name} has no rule`);
      const open =
        name === "ApiVersions" || name === "SaslHandshake" || name === "SaslAuthenticate";
      assert.equal(open, !(name in ROWS), `${name}: open APIs have no row, checked ones do`);
    }
  });

  for (const [name, row] of Object.entries(ROWS) as [Exclude<ApiName, OpenApi>, Row][]) {
    test(`${name}: no credentials closes the connection unanswered`, async () => {
      const client = await RawKafka.connect(port);
      client.request(K[name], row.version, row.body);
      await client.closed;
    });

    test(`${name}: a wrong password is 58 and never reaches the API`, async () => {
      const client = await RawKafka.connect(port);
      const result = await scramLogin(client, "exact", { password: "wrong" });
      assert.equal(result.errorCode, E.SASL_AUTHENTICATION_FAILED);
      await client.closed;
    });

    test(`${name}: authenticated without ACLs is refused with Kafka's code`, async () => {
      assert.equal(await outcome(port, "bare", name, row), "denied");
    });

    test(`${name}: exactly the needed ACLs serve it; a deny rule on top refuses it`, async () => {
      const allowExact = aclsOf("exact", row, "allow");
      const allowDenied = aclsOf("denied", row, "allow");
      const deny = aclsOf("denied", row, "deny").slice(-1);
      const all = [...allowExact, ...allowDenied, ...deny];
      for (const acl of all) await alterAcl(admin, "addAcl", acl);
      try {
        assert.equal(await outcome(port, "exact", name, row), "served");
        assert.equal(await outcome(port, "denied", name, row), "denied");
      } finally {
        for (const acl of all) await alterAcl(admin, "removeAcl", acl);
      }
    });
  }

  test("a full Metadata listing leaves out topics the principal may not describe", async () => {
    const client = await kafkaAs(port, "bare");
    try {
      const answer = await client.call(K.Metadata, 9, {
        topics: null,
        allowAutoTopicCreation: false,
      });
      assert.deepEqual(answer["topics"], []);
    } finally {
      client.close();
    }
  });
});
