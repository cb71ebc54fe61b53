// What every API needs to be allowed (PROTOCOL.md section 11.5): one table, keyed by every API
// name, so that an API added to frames.ts without a row here does not compile, and a test
// (test/protocol/security/authorization_matrix.test.ts) walks it for every API key.
//
//   rule "open"      served before authentication (Handshake, SASL); nothing to check
//   rule "needs"     decodes the request's names and returns requirements: each requirement is
//                    a list of alternatives, one of which must be allowed (CreateTopics: create
//                    on the topic, or create on the cluster)
//   rule "binary"    Produce, Fetch, QueueFetch, QueueAck, ExchangePublish: names read from the
//                    binary body in place and checked through the connection's decision
//                    cache, so that the data path allocates nothing for the check
//                    (_auth_cache.ts)

import type { ApiName } from "../codec/frames.ts";
import {
  arrayField,
  type Fields,
  mapItem,
  optionalArray,
  optionalString,
  readMsgpack,
  stringField,
  stringItems,
} from "../codec/control.ts";
import { Reader } from "../codec/wire.ts";
import { CLUSTER_NAME, type Operation, type ResourceType } from "./acl.ts";

/** One thing that would allow a request; `name` undefined means "any resource of the type". */
export type Need = { type: ResourceType; name: string | undefined; operation: Operation };
/** Alternatives: the requirement holds when any one of them is allowed. */
export type Requirement = Need[];

/** Where a binary body keeps the names a request acts on (read by _auth_cache.ts). */
export type BinaryLayout = "produce" | "fetch" | "queueFetch" | "queueAck" | "exchangePublish";

export type AuthRule =
  | { kind: "open" }
  | { kind: "needs"; needs(fields: Fields): Requirement[] }
  | { kind: "binary"; layout: BinaryLayout; type: ResourceType; operation: Operation }
  | { kind: "metadata" };

const cluster = (operation: Operation): Need => ({
  type: "cluster",
  name: CLUSTER_NAME,
  operation,
});
const topic = (name: string, operation: Operation): Need => ({ type: "topic", name, operation });
const group = (name: string, operation: Operation): Need => ({ type: "group", name, operation });
const queue = (name: string, operation: Operation): Need => ({ type: "queue", name, operation });
const exchange = (name: string, operation: Operation): Need => ({
  type: "exchange",
  name,
  operation,
});
const anyTopic = (operation: Operation): Need => ({ type: "topic", name: undefined, operation });

const ITEMS_MAX = 100_000;

function groupOf(fields: Fields, operation: Operation): Requirement {
  return [group(stringField(fields, "groupId", Number.MAX_SAFE_INTEGER), operation)];
}

/**
 * Bind and unbind, as RabbitMQ checks them: read on the exchange, write on the destination
 * (the queue or topic that will receive what the binding routes).
 */
function bindingNeeds(fields: Fields): Requirement[] {
  const queueName = optionalString(fields, "queue");
  const topicName = optionalString(fields, "topic");
  return [
    [exchange(stringField(fields, "exchange"), "read")],
    ...(queueName === null ? [] : [[queue(queueName, "write")]]),
    ...(topicName === null ? [] : [[topic(topicName, "write")]]),
  ];
}

/** `key` is a list of maps, each naming a topic under `nameKey`. */
function topicsIn(fields: Fields, key: string, nameKey: string, op: Operation): Requirement[] {
  return arrayField(fields, key, ITEMS_MAX).map((item) => [
    topic(stringField(mapItem(item, `${key}[]`), nameKey), op),
  ]);
}

function topicNames(fields: Fields, key: string, op: Operation): Requirement[] {
  const list = optionalArray(fields, key, ITEMS_MAX);
  return list === null ? [] : stringItems(list, key).map((name) => [topic(name, op)]);
}

export const AUTHORIZATION: Readonly<Record<ApiName, AuthRule>> = Object.freeze({
  Handshake: { kind: "open" },
  SaslHandshake: { kind: "open" },
  SaslAuthenticate: { kind: "open" },
  Metadata: { kind: "metadata" },
  CreateTopics: {
    kind: "needs",
    needs: (fields) =>
      arrayField(fields, "topics", ITEMS_MAX).map((item) => [
        topic(stringField(mapItem(item, "topics[]"), "name"), "create"),
        cluster("create"),
      ]),
  },
  DeleteTopics: { kind: "needs", needs: (fields) => topicNames(fields, "topics", "delete") },
  Produce: { kind: "binary", layout: "produce", type: "topic", operation: "write" },
  Fetch: { kind: "binary", layout: "fetch", type: "topic", operation: "read" },
  ListOffsets: {
    kind: "needs",
    needs: (fields) => topicsIn(fields, "topics", "topic", "describe"),
  },
  OffsetCommit: {
    kind: "needs",
    needs: (fields) => [groupOf(fields, "read"), ...topicsIn(fields, "offsets", "topic", "read")],
  },
  OffsetFetch: {
    kind: "needs",
    // Without a topic list the answer names every topic the group committed: that listing
    // needs describe on the cluster.
    needs: (fields) =>
      fields["topics"] == null
        ? [groupOf(fields, "read"), [cluster("describe")]]
        : [groupOf(fields, "read"), ...topicsIn(fields, "topics", "topic", "read")],
  },
  GroupHeartbeat: {
    kind: "needs",
    needs: (fields) => [groupOf(fields, "read"), ...topicNames(fields, "topics", "describe")],
  },
  DescribeGroup: { kind: "needs", needs: (fields) => [groupOf(fields, "describe")] },
  InitProducerId: {
    kind: "needs",
    needs: () => [[cluster("write"), anyTopic("write")]],
  },
  Stats: { kind: "needs", needs: () => [[cluster("describe")]] },
  QueueDeclare: {
    kind: "needs",
    needs: (fields) => {
      const deadLetter = optionalString(fields, "deadLetterTopic");
      return [
        [queue(stringField(fields, "name"), "create")],
        [topic(stringField(fields, "topic"), "read")],
        ...(deadLetter === null ? [] : [[topic(deadLetter, "write")]]),
      ];
    },
  },
  QueueDelete: {
    kind: "needs",
    needs: (fields) => [[queue(stringField(fields, "name"), "delete")]],
  },
  QueuePurge: {
    kind: "needs",
    needs: (fields) => [[queue(stringField(fields, "name"), "delete")]],
  },
  QueueList: {
    kind: "needs",
    needs: (fields) => {
      const names = optionalArray(fields, "names", ITEMS_MAX);
      if (names === null) return [[cluster("describe")]];
      return stringItems(names, "names").map((name) => [queue(name, "describe")]);
    },
  },
  QueueJoin: { kind: "needs", needs: (fields) => [[queue(stringField(fields, "queue"), "read")]] },
  QueueLeave: { kind: "needs", needs: (fields) => [[queue(stringField(fields, "queue"), "read")]] },
  QueueFetch: { kind: "binary", layout: "queueFetch", type: "queue", operation: "read" },
  QueueAck: { kind: "binary", layout: "queueAck", type: "queue", operation: "read" },
  ExchangeDeclare: {
    kind: "needs",
    needs: (fields) => [[exchange(stringField(fields, "name"), "create")]],
  },
  ExchangeDelete: {
    kind: "needs",
    needs: (fields) => [[exchange(stringField(fields, "name"), "delete")]],
  },
  ExchangeList: { kind: "needs", needs: () => [[cluster("describe")]] },
  ExchangeBind: { kind: "needs", needs: bindingNeeds },
  ExchangeUnbind: { kind: "needs", needs: bindingNeeds },
  // Publishing needs write on the exchange only, as in RabbitMQ: the bindings decide where
  // records go, and binding needed write on each destination.
  ExchangePublish: {
    kind: "binary",
    layout: "exchangePublish",
    type: "exchange",
    operation: "write",
  },
  AlterSecurity: { kind: "needs", needs: () => [[cluster("alter")]] },
  DescribeSecurity: { kind: "needs", needs: () => [[cluster("describe")]] },
  // Listing every live group names groups the principal may know nothing of, as a full
  // QueueList or ExchangeList does: it needs describe on the cluster.
  ListGroups: { kind: "needs", needs: () => [[cluster("describe")]] },
  AlterTopicConfigs: {
    kind: "needs",
    needs: (fields) => [[topic(stringField(fields, "topic"), "alter")]],
  },
});

/** The requirements of a msgpack request, decoded from a reader of its own. */
export function requirementsOf(rule: AuthRule & { kind: "needs" }, body: Reader): Requirement[] {
  const copy = new Reader(body.bytes, body.position, body.end);
  return rule.needs(readMsgpack(copy, "request body"));
}

/** The topic names a Metadata request asks for, or null for all. */
export function metadataTopics(body: Reader): string[] | null {
  const fields = readMsgpack(new Reader(body.bytes, body.position, body.end), "MetadataRequest");
  const list = optionalArray(fields, "topics", ITEMS_MAX);
  return list === null ? null : stringItems(list, "topics");
}
