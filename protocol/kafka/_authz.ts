// ACLs on the Kafka listener, checked per request as Kafka's broker checks them (KafkaApis):
// one rule per API, in a table keyed by every API name so that an API added to messages.ts
// without a rule does not compile. The ACLs, superusers and principals are sluice's own
// (server/acl.ts); PROTOCOL.md section 13.6 has the table in prose.
//
// A rule looks at the decoded request and answers one of:
//   serve   the request as it is, or with the resources it may not touch taken out, and a
//           `finish` that puts them back into the answer with Kafka's error code (topics:
//           TOPIC_AUTHORIZATION_FAILED 29, groups: GROUP_AUTHORIZATION_FAILED 30, the cluster:
//           CLUSTER_AUTHORIZATION_FAILED 31), or drops what a full listing may not show;
//   answer  an answer made here, without running the handler (everything was denied).
// A denied topic gets 29 whether or not it exists, so a client learns nothing of topics it may
// not describe.

import { CLUSTER_NAME, type Operation, type ResourceType } from "../server/acl.ts";
import { KAFKA_ERRORS as E } from "./errors.ts";
import type { API_KEYS } from "./messages.ts";
import type { Struct } from "./schema.ts";

/** What a rule asks: may the connection's principal do `operation` on a resource? */
export type Check = {
  allowed(type: ResourceType, name: string, operation: Operation): boolean;
  allowedOnAny(type: ResourceType, operation: Operation): boolean;
};

export type Verdict =
  | { kind: "serve"; body: Struct; finish?: (answer: Struct | null) => Struct | null }
  | { kind: "answer"; answer: Struct | null };

export type KafkaAuthRule = (body: Struct, check: Check, apiVersion: number) => Verdict;

type ApiName = keyof typeof API_KEYS;

const serve = (body: Struct): Verdict => ({ kind: "serve", body });
const answer = (value: Struct | null): Verdict => ({ kind: "answer", answer: value });
const open: KafkaAuthRule = (body) => serve(body);

function refusal(type: ResourceType, name: string, operation: Operation): string {
  return `not allowed to ${operation} ${type} ${JSON.stringify(name.slice(0, 255))}`;
}

const list = (value: unknown): Struct[] => (Array.isArray(value) ? (value as Struct[]) : []);

/**
 * Splits a request's `key` list of topics into those allowed and those denied `operation`;
 * `denied` turns each denied topic into its answer entry.
 */
function splitTopics(
  body: Struct,
  key: string,
  nameKey: string,
  allowed: (name: unknown) => boolean,
): { kept: Struct[]; denied: Struct[] } {
  const kept: Struct[] = [];
  const denied: Struct[] = [];
  for (const topic of list(body[key])) {
    if (allowed(topic[nameKey])) kept.push(topic);
    else denied.push(topic);
  }
  return { kept, denied };
}

/**
 * The common shape: a list of topics, each with partitions; denied topics answer each of
 * their partitions with 29. `whole` is the answer when every topic is denied.
 */
function perTopic(options: {
  key: string;
  nameKey: string;
  answerKey: string;
  operation: Operation;
  partition: (p: Struct, message: string) => Struct;
  whole: (entries: Struct[], body: Struct) => Struct | null;
}): KafkaAuthRule {
  return (body, check) => {
    const { key, nameKey, answerKey, operation } = options;
    const { kept, denied } = splitTopics(body, key, nameKey, (name) =>
      check.allowed("topic", String(name), operation),
    );
    if (denied.length === 0) return serve(body);
    const entries = denied.map((topic) => {
      const message = refusal("topic", String(topic[nameKey]), operation);
      const partitions = list(topic["partitions"]).map((p) => options.partition(p, message));
      return { [nameKey]: topic[nameKey] ?? null, partitions };
    });
    if (kept.length === 0) return answer(options.whole(entries, body));
    return {
      kind: "serve",
      body: { ...body, [key]: kept },
      finish: (served) => {
        if (served === null) return null;
        return { ...served, [answerKey]: [...list(served[answerKey]), ...entries] };
      },
    };
  };
}

const produce = perTopic({
  key: "topics",
  nameKey: "name",
  answerKey: "responses",
  operation: "write",
  partition: (p, message) => ({
    index: p["index"] ?? 0,
    errorCode: E.TOPIC_AUTHORIZATION_FAILED,
    baseOffset: -1,
    logStartOffset: -1,
    errorMessage: message,
  }),
  // acks 0 gets no answer, denied or not (Kafka's broker logs and drops it too).
  whole: (entries, body) => (body["acks"] === 0 ? null : { responses: entries, throttleTimeMs: 0 }),
});

const fetch = perTopic({
  key: "topics",
  nameKey: "topic",
  answerKey: "responses",
  operation: "read",
  partition: (p) => ({
    partitionIndex: p["partition"] ?? 0,
    errorCode: E.TOPIC_AUTHORIZATION_FAILED,
    highWatermark: -1,
    lastStableOffset: -1,
    logStartOffset: -1,
    abortedTransactions: null,
    records: null,
  }),
  whole: (entries) => ({ throttleTimeMs: 0, errorCode: 0, sessionId: 0, responses: entries }),
});

const listOffsets = perTopic({
  key: "topics",
  nameKey: "name",
  answerKey: "topics",
  operation: "describe",
  partition: (p) => ({
    partitionIndex: p["partitionIndex"] ?? 0,
    errorCode: E.TOPIC_AUTHORIZATION_FAILED,
    oldStyleOffsets: [],
    timestamp: -1,
    offset: -1,
  }),
  whole: (entries) => ({ throttleTimeMs: 0, topics: entries }),
});

/** Whether a topic may be created: create on it, or on the cluster. */
function mayCreate(check: Check, name: string): boolean {
  return check.allowed("topic", name, "create") || check.allowed("cluster", CLUSTER_NAME, "create");
}

/**
 * Metadata: describe on each topic. A full listing leaves out what the principal may not
 * describe; a named topic it may not describe is answered 29, existing or not. Auto-creation
 * happens only when every topic asked for may be created.
 */
const metadata: KafkaAuthRule = (body, check) => {
  const describable = (name: unknown) =>
    typeof name !== "string" || check.allowed("topic", name, "describe");
  const full = body["topics"] === null;
  const { kept, denied } = splitTopics(body, "topics", "name", describable);
  const creatable = kept.every((t) => typeof t["name"] !== "string" || mayCreate(check, t["name"]));
  const entries = denied.map((t) => ({
    errorCode: E.TOPIC_AUTHORIZATION_FAILED,
    name: t["name"] ?? null,
    isInternal: false,
    partitions: [],
  }));
  return {
    kind: "serve",
    body: {
      ...body,
      ...(full ? {} : { topics: kept }),
      allowAutoTopicCreation: body["allowAutoTopicCreation"] === true && creatable,
    },
    finish: (served) => {
      if (served === null) return null;
      // Topics found by id are checked by the name they resolved to.
      const shown = list(served["topics"]).flatMap((t) => {
        if (describable(t["name"])) return [t];
        if (full) return [];
        return [{ ...t, errorCode: E.TOPIC_AUTHORIZATION_FAILED, name: null, partitions: [] }];
      });
      return { ...served, topics: [...shown, ...entries] };
    },
  };
};

const createTopics: KafkaAuthRule = (body, check) => {
  const { kept, denied } = splitTopics(body, "topics", "name", (name) =>
    mayCreate(check, String(name)),
  );
  if (denied.length === 0) return serve(body);
  const entries = denied.map((t) => ({
    name: t["name"] ?? "",
    errorCode: E.TOPIC_AUTHORIZATION_FAILED,
    errorMessage: refusal("topic", String(t["name"]), "create"),
    numPartitions: -1,
    replicationFactor: -1,
    configs: null,
  }));
  if (kept.length === 0) return answer({ throttleTimeMs: 0, topics: entries });
  return {
    kind: "serve",
    body: { ...body, topics: kept },
    finish: (served) =>
      served === null ? null : { ...served, topics: [...list(served["topics"]), ...entries] },
  };
};

/** DeleteTopics: delete on each topic, by name (0-5) or by entry (6, ids are not served). */
const deleteTopics: KafkaAuthRule = (body, check, version) => {
  const named = version >= 6;
  const items: Struct[] = named
    ? list(body["topics"])
    : list(body["topicNames"]).map((name) => ({ name }) as Struct);
  const allowed = (t: Struct) =>
    typeof t["name"] !== "string" || check.allowed("topic", t["name"], "delete");
  const kept = items.filter(allowed);
  const entries = items
    .filter((t) => !allowed(t))
    .map((t) => ({
      name: t["name"] ?? null,
      errorCode: E.TOPIC_AUTHORIZATION_FAILED,
      errorMessage: refusal("topic", String(t["name"]), "delete"),
    }));
  if (entries.length === 0) return serve(body);
  if (kept.length === 0) return answer({ throttleTimeMs: 0, responses: entries });
  const keptBody: Struct = named
    ? { ...body, topics: kept }
    : { ...body, topicNames: kept.map((t) => t["name"] as string) };
  return {
    kind: "serve",
    body: keptBody,
    finish: (served) =>
      served === null ? null : { ...served, responses: [...list(served["responses"]), ...entries] },
  };
};

/** DescribeConfigs: describe on each topic (type 2), on the cluster for a broker (type 4). */
const describeConfigs: KafkaAuthRule = (body, check) => {
  const allowed = (r: Struct) =>
    r["resourceType"] === 2
      ? check.allowed("topic", String(r["resourceName"]), "describe")
      : check.allowed("cluster", CLUSTER_NAME, "describe");
  const resources = list(body["resources"]);
  const denied = resources.filter((r) => !allowed(r));
  if (denied.length === 0) return serve(body);
  const entries = denied.map((r) => {
    const topic = r["resourceType"] === 2;
    return {
      errorCode: topic ? E.TOPIC_AUTHORIZATION_FAILED : E.CLUSTER_AUTHORIZATION_FAILED,
      errorMessage: topic
        ? refusal("topic", String(r["resourceName"]), "describe")
        : refusal("cluster", CLUSTER_NAME, "describe"),
      resourceType: r["resourceType"] ?? 0,
      resourceName: r["resourceName"] ?? "",
      configs: [],
    };
  });
  const kept = resources.filter(allowed);
  if (kept.length === 0) return answer({ throttleTimeMs: 0, results: entries });
  return {
    kind: "serve",
    body: { ...body, resources: kept },
    finish: (served) =>
      served === null ? null : { ...served, results: [...list(served["results"]), ...entries] },
  };
};

/** A rule that needs one thing, and answers `denied` (the whole answer) without it. */
function needs(
  what: (body: Struct, check: Check) => boolean,
  denied: (body: Struct, version: number) => Struct,
): KafkaAuthRule {
  return (body, check, version) =>
    what(body, check) ? serve(body) : answer(denied(body, version));
}

const groupRead = (body: Struct, check: Check) =>
  check.allowed("group", String(body["groupId"]), "read");
const groupMessage = (body: Struct, operation: Operation) =>
  refusal("group", String(body["groupId"]), operation);
const clusterDescribe = (_body: Struct, check: Check) =>
  check.allowed("cluster", CLUSTER_NAME, "describe");
const G = E.GROUP_AUTHORIZATION_FAILED;

/** FindCoordinator: describe on each group key; transaction keys are left to the handler. */
const findCoordinator: KafkaAuthRule = (body, check, version) => {
  const keyType = body["keyType"] ?? 0;
  if (keyType !== 0) return serve(body);
  const allowed = (key: unknown) => check.allowed("group", String(key), "describe");
  const failed = (key: unknown) => ({
    nodeId: -1,
    host: "",
    port: -1,
    errorCode: G,
    errorMessage: refusal("group", String(key), "describe"),
  });
  if (version < 4) {
    if (allowed(body["key"])) return serve(body);
    return answer({ throttleTimeMs: 0, ...failed(body["key"]) });
  }
  const keys = list(body["coordinatorKeys"]) as unknown as string[];
  const denied = keys.filter((key) => !allowed(key)).map((key) => ({ key, ...failed(key) }));
  if (denied.length === 0) return serve(body);
  const kept = keys.filter(allowed);
  if (kept.length === 0) return answer({ throttleTimeMs: 0, coordinators: denied });
  return {
    kind: "serve",
    body: { ...body, coordinatorKeys: kept },
    finish: (served) =>
      served === null
        ? null
        : { ...served, coordinators: [...list(served["coordinators"]), ...denied] },
  };
};

/** OffsetCommit: read on the group (else every partition 30), read on each topic (else 29). */
const offsetCommit: KafkaAuthRule = (body, check) => {
  if (!groupRead(body, check)) {
    const topics = list(body["topics"]).map((t) => ({
      name: t["name"] ?? "",
      partitions: list(t["partitions"]).map((p) => ({
        partitionIndex: p["partitionIndex"] ?? 0,
        errorCode: G,
      })),
    }));
    return answer({ throttleTimeMs: 0, topics });
  }
  return perTopic({
    key: "topics",
    nameKey: "name",
    answerKey: "topics",
    operation: "read",
    partition: (p) => ({
      partitionIndex: p["partitionIndex"] ?? 0,
      errorCode: E.TOPIC_AUTHORIZATION_FAILED,
    }),
    whole: (entries) => ({ throttleTimeMs: 0, topics: entries }),
  })(body, check, 0);
};

/** One group of an OffsetFetch: its request part filtered, and what to add to its answer. */
function offsetFetchGroup(check: Check, groupId: string, topics: Struct[] | null) {
  if (!check.allowed("group", groupId, "describe")) return { allowed: false as const };
  const describable = (name: unknown) => check.allowed("topic", String(name), "describe");
  const denied = (topics ?? [])
    .filter((t) => !describable(t["name"]))
    .map((t) => ({
      name: t["name"] ?? "",
      partitions: (list(t["partitionIndexes"]) as unknown as number[]).map((index) => ({
        partitionIndex: index,
        committedOffset: -1,
        metadata: null,
        errorCode: E.TOPIC_AUTHORIZATION_FAILED,
      })),
    }));
  const kept = topics === null ? null : topics.filter((t) => describable(t["name"]));
  // The answer: committed topics it may not describe are left out of a full listing.
  const finish = (answered: Struct[]) => [
    ...answered.filter((t) => describable(t["name"])),
    ...denied,
  ];
  return { allowed: true as const, kept, finish };
}

/** OffsetFetch: describe on the group (else 30) and on each topic (else 29, or left out). */
const offsetFetch: KafkaAuthRule = (body, check, version) => {
  if (version < 8) {
    const part = offsetFetchGroup(
      check,
      String(body["groupId"]),
      body["topics"] as Struct[] | null,
    );
    if (!part.allowed) return answer({ throttleTimeMs: 0, topics: [], errorCode: G });
    return {
      kind: "serve",
      body: { ...body, topics: part.kept },
      finish: (served) =>
        served === null ? null : { ...served, topics: part.finish(list(served["topics"])) },
    };
  }
  const groups = list(body["groups"]);
  const parts = groups.map((g) => ({
    groupId: String(g["groupId"]),
    group: g,
    part: offsetFetchGroup(check, String(g["groupId"]), g["topics"] as Struct[] | null),
  }));
  const denied = parts
    .filter((p) => !p.part.allowed)
    .map((p) => ({ groupId: p.groupId, topics: [], errorCode: G }));
  const kept = parts.flatMap((p) => (p.part.allowed ? [{ ...p.group, topics: p.part.kept }] : []));
  if (kept.length === 0) return answer({ throttleTimeMs: 0, groups: denied });
  return {
    kind: "serve",
    body: { ...body, groups: kept },
    finish: (served) => {
      if (served === null) return null;
      const answered = list(served["groups"]).map((g) => {
        const part = parts.find((p) => p.groupId === g["groupId"])?.part;
        if (part === undefined || !part.allowed) return g;
        return { ...g, topics: part.finish(list(g["topics"])) };
      });
      return { ...served, groups: [...answered, ...denied] };
    },
  };
};

/** DescribeGroups: describe on each group, else that group is answered 30. */
const describeGroups: KafkaAuthRule = (body, check) => {
  const ids = list(body["groups"]) as unknown as string[];
  const allowed = (id: string) => check.allowed("group", id, "describe");
  const denied = ids
    .filter((id) => !allowed(id))
    .map((groupId) => ({
      errorCode: G,
      groupId,
      groupState: "",
      protocolType: "",
      protocolData: "",
      members: [],
    }));
  if (denied.length === 0) return serve(body);
  const kept = ids.filter(allowed);
  if (kept.length === 0) return answer({ throttleTimeMs: 0, groups: denied });
  return {
    kind: "serve",
    body: { ...body, groups: kept },
    finish: (served) =>
      served === null ? null : { ...served, groups: [...list(served["groups"]), ...denied] },
  };
};

/** ListGroups: every group with describe on the cluster, else those it may describe. */
const listGroups: KafkaAuthRule = (body, check) => {
  if (clusterDescribe(body, check)) return serve(body);
  return {
    kind: "serve",
    body,
    finish: (served) =>
      served === null
        ? null
        : {
            ...served,
            groups: list(served["groups"]).filter((g) =>
              check.allowed("group", String(g["groupId"]), "describe"),
            ),
          },
  };
};

/** ConsumerGroupHeartbeat: read on the group (30), describe on each subscribed topic (29). */
const consumerGroupHeartbeat: KafkaAuthRule = (body, check) => {
  const failed = (errorCode: number, errorMessage: string) =>
    answer({
      throttleTimeMs: 0,
      errorCode,
      errorMessage,
      memberId: null,
      memberEpoch: -1,
      heartbeatIntervalMs: 0,
      assignment: null,
    });
  if (!groupRead(body, check)) return failed(G, groupMessage(body, "read"));
  for (const name of list(body["subscribedTopicNames"]) as unknown as string[]) {
    if (!check.allowed("topic", name, "describe")) {
      return failed(E.TOPIC_AUTHORIZATION_FAILED, refusal("topic", name, "describe"));
    }
  }
  return serve(body);
};

/** Every API's rule, by name: a new API in messages.ts without a rule does not compile. */
export const KAFKA_AUTHORIZATION: Readonly<Record<ApiName, KafkaAuthRule>> = Object.freeze({
  ApiVersions: open,
  SaslHandshake: open,
  SaslAuthenticate: open,
  Produce: produce,
  Fetch: fetch,
  ListOffsets: listOffsets,
  Metadata: metadata,
  CreateTopics: createTopics,
  DeleteTopics: deleteTopics,
  DescribeConfigs: describeConfigs,
  DescribeCluster: needs(clusterDescribe, () => ({
    throttleTimeMs: 0,
    errorCode: E.CLUSTER_AUTHORIZATION_FAILED,
    errorMessage: refusal("cluster", CLUSTER_NAME, "describe"),
    clusterId: "",
    brokers: [],
  })),
  // Idempotent producers: write on the cluster, or on any topic (as Kafka since 2.8).
  InitProducerId: needs(
    (_body, check) =>
      check.allowed("cluster", CLUSTER_NAME, "write") || check.allowedOnAny("topic", "write"),
    () => ({ throttleTimeMs: 0, errorCode: E.CLUSTER_AUTHORIZATION_FAILED }),
  ),
  FindCoordinator: findCoordinator,
  JoinGroup: needs(groupRead, () => ({
    throttleTimeMs: 0,
    errorCode: G,
    generationId: -1,
    protocolName: "",
    leader: "",
    memberId: "",
    members: [],
  })),
  SyncGroup: needs(groupRead, () => ({ throttleTimeMs: 0, errorCode: G })),
  Heartbeat: needs(groupRead, () => ({ throttleTimeMs: 0, errorCode: G })),
  LeaveGroup: needs(groupRead, () => ({ throttleTimeMs: 0, errorCode: G, members: [] })),
  OffsetCommit: offsetCommit,
  OffsetFetch: offsetFetch,
  DescribeGroups: describeGroups,
  ListGroups: listGroups,
  ConsumerGroupHeartbeat: consumerGroupHeartbeat,
});
