// The table of Kafka request handlers, by API key. A handler reads all it needs from the
// request's decoded body before its first await: the body's views point into the socket's
// buffer.

import * as admin from "./_admin.ts";
import { consumerGroupHeartbeat } from "./_consumer_groups.ts";
import * as data from "./_data.ts";
import * as groups from "./_groups.ts";
import type { Handler } from "./_plane.ts";
import { API_KEYS as K } from "./messages.ts";
import { saslAuthenticate, saslHandshake } from "./_sasl_handlers.ts";

export type { Handler, KafkaPlane, RequestInfo } from "./_plane.ts";

export const HANDLERS: ReadonlyMap<number, Handler> = new Map<number, Handler>([
  [K.ApiVersions, admin.apiVersions],
  [K.Metadata, admin.metadata],
  [K.CreateTopics, admin.createTopics],
  [K.DeleteTopics, admin.deleteTopics],
  [K.DescribeConfigs, admin.describeConfigs],
  [K.DescribeCluster, admin.describeCluster],
  [K.InitProducerId, admin.initProducerId],
  [K.FindCoordinator, admin.findCoordinator],
  [K.Produce, data.produce],
  [K.Fetch, data.fetch],
  [K.ListOffsets, data.listOffsets],
  [K.JoinGroup, groups.joinGroup],
  [K.SyncGroup, groups.syncGroup],
  [K.Heartbeat, groups.heartbeat],
  [K.LeaveGroup, groups.leaveGroup],
  [K.OffsetCommit, groups.offsetCommit],
  [K.OffsetFetch, groups.offsetFetch],
  [K.DescribeGroups, groups.describeGroups],
  [K.ListGroups, groups.listGroups],
  [K.ConsumerGroupHeartbeat, consumerGroupHeartbeat],
  [K.SaslHandshake, saslHandshake],
  [K.SaslAuthenticate, saslAuthenticate],
]);
