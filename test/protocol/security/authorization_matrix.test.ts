// The authorization matrix: every API × (no credentials, wrong password, authenticated
// without ACLs, authenticated with exactly the ACLs the API needs, those ACLs plus a deny
// rule). The rows come from one table keyed by every API name, so an API added to frames.ts
// without a row here fails to compile, and one without a rule in the server's authorization
// table fails the first test.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { encodeRecordBatch } from "../../../record/mod.ts";
import type { Fields } from "../../../protocol/codec/control.ts";
import { writeMsgpack } from "../../../protocol/codec/control.ts";
import { ServerError } from "../../../protocol/codec/errors.ts";
import { writeExchangePublishRequest } from "../../../protocol/codec/exchange.ts";
import { writeFetchRequest } from "../../../protocol/codec/fetch.ts";
import { API, type ApiName } from "../../../protocol/codec/frames.ts";
import { writeProduceRequest } from "../../../protocol/codec/produce.ts";
import { writeQueueAckRequest } from "../../../protocol/codec/queue_ack.ts";
import { writeQueueFetchRequest } from "../../../protocol/codec/queue_fetch.ts";
import type { Writer } from "../../../protocol/codec/wire.ts";
import type { ClientConnection } from "../../../protocol/client/mod.ts";
import type { Acl, Operation, ResourceType } from "../../../protocol/server/acl.ts";
import { AUTHORIZATION } from "../../../protocol/server/_auth_table.ts";
import type { TestServer } from "../server/serving.ts";
import { alterAcl, clientAs, control, PASSWORD, startSecureServer } from "./secure_server.ts";

type Row = {
  /** The request body. */
  body: (writer: Writer) => void;
  /** Exactly the ACLs the API needs (resource type, name, operation; literal unless noted). */
  needs: [ResourceType, string, Operation, "prefixed"?][];
};

const msgpack =
  (body: Fields) =>
  (writer: Writer): void =>
    writeMsgpack(writer, body);

const batch = encodeRecordBatch([{ value: new TextEncoder().encode("v") }]);

/** Every API that is checked, by name; the open ones (Handshake, SASL) are apart below. */
const ROWS: Record<Exclude<ApiName, "Handshake" | "SaslHandshake" | "SaslAuthenticate">, Row> = {
  Metadata: { body: msgpack({ topics: ["t"] }), needs: [["topic", "t", "describe"]] },
  CreateTopics: {
    body: msgpack({ topics: [{ name: `new-${Math.random().toString(36).slice(2)}` }] }),
    needs: [["topic", "new-", "create", "prefixed"]],
  },
  DeleteTopics: { body: msgpack({ topics: ["gone"] }), needs: [["topic", "gone", "delete"]] },
  Produce: {
    body: (w) =>
      writeProduceRequest(w, {
        acks: 1,
        timeoutMs: 5000,
        topics: [{ topic: "t", partitions: [{ partition: 0, records: batch }] }],
      }),
    needs: [["topic", "t", "write"]],
  },
  Fetch: {
    body: (w) =>
      writeFetchRequest(w, {
        maxWaitMs: 0,
        minBytes: 0,
        maxBytes: 65536,
        topics: [
          { topic: "t", partitions: [{ partition: 0, fetchOffset: 0, partitionMaxBytes: 65536 }] },
        ],
      }),
    needs: [["topic", "t", "read"]],
  },
  ListOffsets: {
    body: msgpack({ topics: [{ topic: "t", partitions: [{ partition: 0, timestamp: -1 }] }] }),
    needs: [["topic", "t", "describe"]],
  },
  OffsetCommit: {
    body: msgpack({ groupId: "g", offsets: [{ topic: "t", partition: 0, offset: 0 }] }),
    needs: [
      ["group", "g", "read"],
      ["topic", "t", "read"],
    ],
  },
  OffsetFetch: {
    body: msgpack({ groupId: "g", topics: [{ topic: "t", partitions: [0] }] }),
    needs: [
      ["group", "g", "read"],
      ["topic", "t", "read"],
    ],
  },
  GroupHeartbeat: {
    body: msgpack({ groupId: "hb", memberId: null, memberEpoch: 0, topics: ["t"] }),
    needs: [
      ["group", "hb", "read"],
      ["topic", "t", "describe"],
    ],
  },
  DescribeGroup: { body: msgpack({ groupId: "g" }), needs: [["group", "g", "describe"]] },
  InitProducerId: { body: msgpack({}), needs: [["topic", "t", "write"]] },
  Stats: { body: msgpack({}), needs: [["cluster", "cluster", "describe"]] },
  QueueDeclare: {
    body: msgpack({ name: "q2", topic: "t", from: "beginning" }),
    needs: [
      ["queue", "q2", "create"],
      ["topic", "t", "read"],
    ],
  },
  ExchangeDeclare: {
    body: msgpack({ name: "x", type: "direct" }),
    needs: [["exchange", "x", "create"]],
  },
  ExchangeDelete: { body: msgpack({ name: "gone-x" }), needs: [["exchange", "gone-x", "delete"]] },
  ExchangeList: { body: msgpack({}), needs: [["cluster", "cluster", "describe"]] },
  ExchangeBind: {
    body: msgpack({ exchange: "x", topic: "t", routingKey: "k" }),
    needs: [
      ["exchange", "x", "read"],
      ["topic", "t", "write"],
    ],
  },
  ExchangeUnbind: {
    body: msgpack({ exchange: "x", queue: "q", routingKey: "k" }),
    needs: [
      ["exchange", "x", "read"],
      ["queue", "q", "write"],
    ],
  },
  ExchangePublish: {
    body: (w) =>
      writeExchangePublishRequest(w, { acks: 1, timeoutMs: 5000, exchange: "", records: batch }),
    needs: [["exchange", "amq.default", "write"]],
  },
  QueueDelete: { body: msgpack({ name: "nothing" }), needs: [["queue", "nothing", "delete"]] },
  QueuePurge: { body: msgpack({ name: "q" }), needs: [["queue", "q", "delete"]] },
  QueueList: { body: msgpack({ names: ["q"] }), needs: [["queue", "q", "describe"]] },
  QueueJoin: { body: msgpack({ queue: "q" }), needs: [["queue", "q", "read"]] },
  QueueLeave: { body: msgpack({ queue: "q", memberId: "m" }), needs: [["queue", "q", "read"]] },
  QueueFetch: {
    body: (w) =>
      writeQueueFetchRequest(w, {
        maxWaitMs: 0,
        maxRecords: 1,
        maxBytes: 65536,
        queue: "q",
        memberId: "m",
        acks: [],
      }),
    needs: [["queue", "q", "read"]],
  },
  QueueAck: {
    body: (w) => writeQueueAckRequest(w, { queue: "q", memberId: "m", partitions: [] }),
    needs: [["queue", "q", "read"]],
  },
  AlterSecurity: {
    body: msgpack({ action: "deleteUser", name: "nobody" }),
    needs: [["cluster", "cluster", "alter"]],
  },
  DescribeSecurity: {
    body: msgpack({ what: "users" }),
    needs: [["cluster", "cluster", "describe"]],
  },
  ListGroups: { body: msgpack({}), needs: [["cluster", "cluster", "describe"]] },
  AlterTopicConfigs: {
    body: msgpack({ topic: "t", config: { retentionMs: 3_600_000 } }),
    needs: [["topic", "t", "alter"]],
  },
};

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

/** The request-level outcome: 0, or the code's name. */
async function outcome(connection: ClientConnection, apiKey: number, row: Row): Promise<string> {
  try {
    await connection.request(apiKey, row.body);
    return "served";
  } catch (error) {
    if (error instanceof ServerError) return error.code;
    throw error;
  }
}

describe("authorization matrix", () => {
  let served: TestServer;
  let admin: ClientConnection;

  before(async () => {
    served = await startSecureServer(["admin", "bare", "exact", "denied"]);
    admin = await clientAs(served.port, "admin");
    await control(admin, API.CreateTopics, { topics: [{ name: "t" }] });
    await control(admin, API.QueueDeclare, { name: "q", topic: "t", from: "beginning" });
  });

  after(async () => {
    await admin.close();
    await served[Symbol.asyncDispose]();
  });

  test("every API key has a rule in the server's table and a row here", () => {
    for (const [name, apiKey] of Object.entries(API)) {
      assert.ok(AUTHORIZATION[name as ApiName] !== undefined, `${name} (${apiKey}) has no rule`);
      const open = AUTHORIZATION[name as ApiName].kind === "open";
      assert.equal(open, !(name in ROWS), `${name}: open APIs have no row, checked ones do`);
    }
  });

  for (const [name, row] of Object.entries(ROWS)) {
    const apiKey = API[name as keyof typeof ROWS];
    test(`${name}: no credentials is AUTHENTICATION_REQUIRED, then closed`, async () => {
      await using anonymous = await clientAs(served.port, undefined);
      assert.equal(await outcome(anonymous, apiKey, row), "AUTHENTICATION_REQUIRED");
      await anonymous.whenClosed;
    });

    test(`${name}: a wrong password never reaches the API`, async () => {
      await assert.rejects(
        clientAs(served.port, undefined, { sasl: { username: "exact", password: "wrong" } }),
        (error: unknown) => error instanceof ServerError && error.code === "AUTHENTICATION_FAILED",
      );
      assert.notEqual(PASSWORD, "wrong");
    });

    test(`${name}: authenticated without ACLs is AUTHORIZATION_FAILED`, async () => {
      await using bare = await clientAs(served.port, "bare");
      assert.equal(await outcome(bare, apiKey, row), "AUTHORIZATION_FAILED");
    });

    test(`${name}: exactly the needed ACLs serve it; a deny rule on top refuses it`, async () => {
      const allowExact = aclsOf("exact", row, "allow");
      const allowDenied = aclsOf("denied", row, "allow");
      const deny = aclsOf("denied", row, "deny").slice(-1);
      for (const acl of [...allowExact, ...allowDenied, ...deny])
        await alterAcl(admin, "addAcl", acl);
      try {
        await using exact = await clientAs(served.port, "exact");
        assert.equal(await outcome(exact, apiKey, row), "served");
        await using denied = await clientAs(served.port, "denied");
        assert.equal(await outcome(denied, apiKey, row), "AUTHORIZATION_FAILED");
      } finally {
        for (const acl of [...allowExact, ...allowDenied, ...deny]) {
          await alterAcl(admin, "removeAcl", acl);
        }
      }
    });
  }

  test("Handshake and SASL are served before authentication", async () => {
    await using anonymous = await clientAs(served.port, undefined);
    assert.ok(anonymous.supports(API.SaslHandshake));
    await anonymous.request(API.SaslHandshake, (w) => w.string("SCRAM-SHA-256"));
  });
});
