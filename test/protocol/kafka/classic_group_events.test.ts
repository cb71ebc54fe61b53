// The Kafka listener's classic groups seen by operators: each member joining and leaving, and
// each completed rebalance with its generation, reported through the server's onEvent (which
// `sluice serve` logs); and the group in sluice's own ListGroups with Kafka's state names.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Admin } from "../../../protocol/client/mod.ts";
import { API_KEYS as K, type Struct } from "../../../protocol/kafka/mod.ts";
import type { ServerEvent } from "../../../protocol/server/mod.ts";
import { RawKafka, startKafkaServer } from "./kafka_serving.ts";

const join: Struct = {
  groupId: "legacy",
  sessionTimeoutMs: 10_000,
  rebalanceTimeoutMs: 10_000,
  memberId: "",
  protocolType: "consumer",
  protocols: [{ name: "range", metadata: new Uint8Array([0, 1]) }],
};

describe("classic group events", () => {
  test("joined, rebalanced with its generation, left; listed by ListGroups", async () => {
    const events: ServerEvent[] = [];
    await using broker = await startKafkaServer({
      server: { onEvent: (event) => events.push(event) },
    });
    const kafka = await RawKafka.connect(broker.port);
    await using admin = new Admin({ port: broker.server.port });
    try {
      const joined = await kafka.call(K.JoinGroup, 0, join);
      assert.equal(joined["errorCode"], 0);
      const memberId = joined["memberId"] as string;
      assert.deepEqual(await admin.listGroups(), [
        {
          groupId: "legacy",
          state: "CompletingRebalance",
          protocolType: "consumer",
          groupEpoch: 1,
          members: 1,
        },
      ]);
      const left = await kafka.call(K.LeaveGroup, 0, { groupId: "legacy", memberId });
      assert.equal(left["errorCode"], 0);
      assert.deepEqual(events, [
        {
          type: "classicGroup",
          kind: "joined",
          groupId: "legacy",
          memberId,
          groupEpoch: 0,
          members: 1,
        },
        {
          type: "classicGroup",
          kind: "rebalanced",
          groupId: "legacy",
          memberId: "",
          groupEpoch: 1,
          members: 1,
        },
        {
          type: "classicGroup",
          kind: "left",
          groupId: "legacy",
          memberId,
          groupEpoch: 1,
          members: 0,
        },
      ]);
      assert.deepEqual(await admin.listGroups(), []);
    } finally {
      kafka.close();
    }
  });
});
