// KIP-848's ConsumerGroupHeartbeat over Kafka's protocol, onto sluice's own coordinator
// (engine/groups.ts), which already works this way: members heartbeat with an epoch, the
// broker computes the assignment and hands each member its part. Kafka names topics in the
// assignment by id (_topic_ids.ts). Such a group is a sluice group: native clients and Kafka
// clients speaking KIP-848 may share it; classic members may not (INCONSISTENT_GROUP_PROTOCOL).

import { type Assignment, SluiceError } from "../../engine/mod.ts";
import { errorToKafka, KAFKA_ERRORS } from "./errors.ts";
import type { KafkaPlane } from "./_plane.ts";
import { topicId } from "./_topic_ids.ts";
import type { Struct } from "./schema.ts";

function assignmentToKafka(plane: KafkaPlane, assignment: Assignment): Struct {
  const topicPartitions: Struct[] = [];
  for (const [topic, partitions] of assignment) {
    try {
      topicPartitions.push({ topicId: topicId(plane.engine.describeTopic(topic)), partitions });
    } catch (error) {
      // A topic deleted since the assignment was computed: its partitions are left out.
      if (!(error instanceof SluiceError)) throw error;
    }
  }
  return { topicPartitions };
}

export function consumerGroupHeartbeat(plane: KafkaPlane, body: Struct): Struct {
  const memberId = body["memberId"] as string;
  const memberEpoch = body["memberEpoch"] as number;
  const topics = body["subscribedTopicNames"] as string[] | null;
  const failed = (errorCode: number, errorMessage: string): Struct => ({
    throttleTimeMs: 0,
    errorCode,
    errorMessage,
    memberId,
    memberEpoch: -1,
    heartbeatIntervalMs: 0,
    assignment: null,
  });
  if (body["subscribedTopicRegex"] !== null) {
    return failed(
      KAFKA_ERRORS.INVALID_REQUEST,
      "subscription by regular expression is not supported",
    );
  }
  if (memberEpoch === 0 && plane.classic.claims(body["groupId"] as string)) {
    return failed(KAFKA_ERRORS.INCONSISTENT_GROUP_PROTOCOL, "the group has classic members");
  }
  try {
    const answer = plane.groups.heartbeat({
      groupId: body["groupId"] as string,
      memberId: memberId === "" ? null : memberId,
      memberEpoch,
      topics: topics === null ? null : [...topics],
    });
    return {
      throttleTimeMs: 0,
      errorCode: 0,
      errorMessage: null,
      memberId: answer.memberId,
      memberEpoch: answer.memberEpoch,
      heartbeatIntervalMs: answer.heartbeatIntervalMs,
      assignment: answer.assignment === null ? null : assignmentToKafka(plane, answer.assignment),
    };
  } catch (error) {
    const { code, message } = errorToKafka(error);
    return failed(code, message);
  }
}
