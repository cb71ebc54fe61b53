// One group-id space for both group protocols: a group with members is either a classic group
// (Kafka clients on the Kafka listener) or a sluice group (native GroupHeartbeat), and a join
// of the other kind is refused with INCONSISTENT_GROUP_PROTOCOL: Kafka's code 23 on the Kafka
// listener, sluice's 44 on the native one. Once the holders leave, the other kind may join.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type Fields, readMsgpack, writeMsgpack } from "../../../protocol/codec/control.ts";
import { WIRE_ERRORS } from "../../../protocol/codec/errors.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { API_KEYS as K, KAFKA_ERRORS, type Struct } from "../../../protocol/kafka/mod.ts";
import type { RawClient } from "../server/raw_client.ts";
import { connected } from "../server/serving.ts";
import { RawKafka, startKafkaServer } from "./kafka_serving.ts";

async function heartbeat(client: RawClient, body: Fields): Promise<Fields> {
  const id = client.request(API.GroupHeartbeat, (w) => writeMsgpack(w, body));
  const { reader } = await client.response(id);
  return readMsgpack(reader, "GroupHeartbeatResponse");
}

function classicJoin(memberId: string): Struct {
  return {
    groupId: "shared",
    sessionTimeoutMs: 10_000,
    rebalanceTimeoutMs: 10_000,
    memberId,
    protocolType: "consumer",
    protocols: [{ name: "range", metadata: new Uint8Array([0, 1]) }],
  };
}

describe("one group-id space for classic and sluice groups", () => {
  test("a join of the other kind gets INCONSISTENT_GROUP_PROTOCOL", async () => {
    await using broker = await startKafkaServer();
    await broker.server.engine.createTopic("t", { partitions: 2 });
    using native = await connected(broker.server.port);
    const kafka = await RawKafka.connect(broker.port);
    try {
      // A classic member holds the id: the native join is refused.
      const joined = await kafka.call(K.JoinGroup, 0, classicJoin(""));
      assert.equal(joined["errorCode"], 0);
      const memberId = joined["memberId"] as string;
      const refused = await heartbeat(native, {
        groupId: "shared",
        memberId: null,
        memberEpoch: 0,
        topics: ["t"],
      });
      assert.equal(refused["errorCode"], WIRE_ERRORS.INCONSISTENT_GROUP_PROTOCOL);

      // It leaves; the native member joins; now a classic join is refused.
      const left = await kafka.call(K.LeaveGroup, 0, { groupId: "shared", memberId });
      assert.equal(left["errorCode"], 0);
      const accepted = await heartbeat(native, {
        groupId: "shared",
        memberId: null,
        memberEpoch: 0,
        topics: ["t"],
      });
      assert.equal(accepted["errorCode"], 0);
      const second = await kafka.call(K.JoinGroup, 0, classicJoin(""));
      assert.equal(second["errorCode"], KAFKA_ERRORS.INCONSISTENT_GROUP_PROTOCOL);
    } finally {
      kafka.close();
    }
  });
});
