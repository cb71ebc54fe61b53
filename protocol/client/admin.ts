// Administration: topics, offsets, groups, server stats. Each method is one request; a failure
// for any topic or partition it names rejects with that item's ServerError (the message names
// the item), so a caller never has to dig codes out of a result.

import { WIRE_ERRORS, errorFromWire } from "../codec/errors.ts";
import {
  type CommittedOffset,
  commitOffsets,
  createTopics,
  deleteTopics,
  describeGroup,
  EARLIEST_TIMESTAMP,
  fetchOffsets,
  type GroupDescription,
  LATEST_TIMESTAMP,
  listOffsets,
  type Metadata,
  metadata,
  type NewTopic,
  type OffsetToCommit,
  type ServerStats,
  stats,
  type TopicPartitions,
  type TopicResult,
} from "./control_calls.ts";
import {
  declareQueue,
  deleteQueue,
  listQueues,
  purgeQueue,
  type QueueDescription,
  type QueueInfo,
  type QueueSettings,
} from "./queue_admin.ts";
import { type ClientOptions, Session } from "./session.ts";
import {
  type AlterableTopicConfig,
  alterTopicConfigs,
  type GroupList,
  type GroupListing,
  listGroups,
} from "./operator_calls.ts";
import {
  type BindingSettings,
  bindExchange,
  declareExchange,
  deleteExchange,
  type ExchangeInfo,
  type ExchangeSettings,
  listExchanges,
} from "./exchange_admin.ts";

/** "earliest" (the log start), "latest" (the high watermark) or a timestamp in ms. */
export type OffsetSpec = "earliest" | "latest" | number;
export type OffsetRequest = { topic: string; partition: number; at: OffsetSpec };
export type OffsetResult = { topic: string; partition: number; offset: number; timestamp: number };

export function offsetSpecTimestamp(at: OffsetSpec): number {
  if (at === "earliest") return EARLIEST_TIMESTAMP;
  if (at === "latest") return LATEST_TIMESTAMP;
  if (!Number.isSafeInteger(at) || at < 0) {
    throw new RangeError(`offset spec ${String(at)} must be "earliest", "latest" or a timestamp`);
  }
  return at;
}

function checkResults(results: TopicResult[], ignoreCode: number | undefined, verb: string) {
  for (const result of results) {
    if (result.errorCode !== 0 && result.errorCode !== ignoreCode) {
      throw errorFromWire(
        result.errorCode,
        `${verb} topic ${result.name}${result.errorMessage ? `: ${result.errorMessage}` : ""}`,
      );
    }
  }
}

function checkStrings(values: readonly string[], what: string): void {
  if (!Array.isArray(values)) throw new TypeError(`${what} must be an array of strings`);
  for (const value of values) {
    if (typeof value !== "string") throw new TypeError(`${what} must be strings, not ${value}`);
  }
}

export class Admin {
  #session: Session;

  constructor(options: ClientOptions = {}) {
    this.#session = new Session(options);
  }

  /** Creates topics; `ifNotExists` makes an existing topic no error. */
  async createTopics(
    topics: readonly NewTopic[],
    options: { ifNotExists?: boolean } = {},
  ): Promise<void> {
    if (!Array.isArray(topics)) throw new TypeError("topics must be an array of { name }");
    for (const topic of topics) {
      if (typeof topic?.name !== "string") throw new TypeError("every topic needs a name");
    }
    const results = await createTopics(this.#session, topics);
    const ignore = options.ifNotExists === true ? WIRE_ERRORS.TOPIC_EXISTS : undefined;
    checkResults(results, ignore, "create");
  }

  /** Deletes topics; `ifExists` makes a missing topic no error. */
  async deleteTopics(
    names: readonly string[],
    options: { ifExists?: boolean } = {},
  ): Promise<void> {
    checkStrings(names, "topic names");
    const results = await deleteTopics(this.#session, names);
    const ignore = options.ifExists === true ? WIRE_ERRORS.UNKNOWN_TOPIC : undefined;
    checkResults(results, ignore, "delete");
  }

  /** Brokers and topics with their partitions and configs; all topics when none are named. */
  metadata(topics?: readonly string[]): Promise<Metadata> {
    if (topics !== undefined) checkStrings(topics, "topics");
    return metadata(this.#session, topics ?? null);
  }

  async listTopics(): Promise<string[]> {
    const result = await metadata(this.#session, null);
    return result.topics.filter((t) => t.errorCode === 0).map((t) => t.name);
  }

  /** Offsets by time: the log start, the high watermark, or the first record at or after. */
  async listOffsets(requests: readonly OffsetRequest[]): Promise<OffsetResult[]> {
    if (!Array.isArray(requests)) throw new TypeError("listOffsets needs an array");
    const queries = requests.map((r) => ({
      topic: r.topic,
      partition: r.partition,
      timestamp: offsetSpecTimestamp(r.at),
    }));
    const answers = await listOffsets(this.#session, queries);
    return answers.map((answer) => {
      if (answer.errorCode !== 0) {
        const where = `${answer.topic}-${answer.partition}`;
        throw errorFromWire(answer.errorCode, `list offsets of ${where}`);
      }
      const { topic, partition, offset, timestamp } = answer;
      return { topic, partition, offset, timestamp };
    });
  }

  /** Members, assignments and committed offsets with lag. */
  describeGroup(groupId: string): Promise<GroupDescription> {
    if (typeof groupId !== "string") throw new TypeError("groupId must be a string");
    return describeGroup(this.#session, groupId);
  }

  /**
   * Every consumer group the broker knows: live groups with their state, epoch and member
   * count, and groups known only by committed offsets (state "empty"). A broker with more
   * than one answer holds (100,000) answers the first by id: `listGroupsResult` says so.
   */
  async listGroups(): Promise<GroupListing[]> {
    return (await listGroups(this.#session)).groups;
  }

  /** ListGroups' whole answer: the groups and whether the broker left some out. */
  listGroupsResult(): Promise<GroupList> {
    return listGroups(this.#session);
  }

  /**
   * Changes some of a live topic's config (retention, roll, batch limit, fsync); the broker
   * persists it. Resolves to the topic's whole config afterwards; a bad value rejects with
   * INVALID_CONFIG naming the field, and nothing changes.
   */
  alterTopicConfigs(topic: string, config: AlterableTopicConfig): Promise<Record<string, unknown>> {
    if (typeof topic !== "string") throw new TypeError("topic must be a string");
    if (typeof config !== "object" || config === null) {
      throw new TypeError("config must be an object of the fields to change");
    }
    return alterTopicConfigs(this.#session, topic, config);
  }

  /**
   * Commits offsets for a group (the next offset to consume, as Kafka). Without `member` the
   * commit is unchecked, as for a consumer that manages its own partitions.
   */
  commitOffsets(
    groupId: string,
    offsets: readonly OffsetToCommit[],
    member?: { memberId: string; memberEpoch: number },
  ): Promise<void> {
    if (typeof groupId !== "string") throw new TypeError("groupId must be a string");
    if (!Array.isArray(offsets)) throw new TypeError("offsets must be an array");
    return commitOffsets(this.#session, {
      groupId,
      memberId: member?.memberId ?? null,
      memberEpoch: member?.memberEpoch ?? -1,
      offsets,
    });
  }

  /** Committed offsets of a group (offset -1: none); all the group has when none are named. */
  fetchOffsets(groupId: string, topics?: readonly TopicPartitions[]): Promise<CommittedOffset[]> {
    if (typeof groupId !== "string") throw new TypeError("groupId must be a string");
    return fetchOffsets(this.#session, groupId, topics ?? null);
  }

  stats(): Promise<ServerStats> {
    return stats(this.#session);
  }

  /**
   * Declares a queue on a topic (records handed out one by one to competing QueueConsumers).
   * Declaring it again with the same settings is no error; with others it is QUEUE_EXISTS.
   */
  declareQueue(name: string, settings: QueueSettings): Promise<QueueInfo> {
    return declareQueue(this.#session, name, settings);
  }

  /** Deletes a queue and its state; `ifExists` makes a missing queue no error. */
  deleteQueue(name: string, options: { ifExists?: boolean } = {}): Promise<void> {
    return deleteQueue(this.#session, name, options);
  }

  /** Marks every record in the queue now done, held ones included; returns how many. */
  purgeQueue(name: string): Promise<number> {
    return purgeQueue(this.#session, name);
  }

  /** Queues with their settings and counts (ready, acquired, ...); all when none are named. */
  listQueues(names?: readonly string[]): Promise<QueueDescription[]> {
    return listQueues(this.#session, names);
  }

  /** Declares an exchange; the same settings again is no error, others EXCHANGE_EXISTS. */
  declareExchange(name: string, settings: ExchangeSettings): Promise<ExchangeInfo> {
    return declareExchange(this.#session, name, settings);
  }

  deleteExchange(name: string): Promise<void> {
    return deleteExchange(this.#session, name);
  }

  /** Binds a queue or a topic; resolves to false when that binding existed already. */
  bindExchange(name: string, binding: BindingSettings): Promise<boolean> {
    return bindExchange(this.#session, name, binding, "bind");
  }

  /** Removes a binding; resolves to false when there was none. */
  unbindExchange(name: string, binding: BindingSettings): Promise<boolean> {
    return bindExchange(this.#session, name, binding, "unbind");
  }

  listExchanges(): Promise<ExchangeInfo[]> {
    return listExchanges(this.#session);
  }

  async close(): Promise<void> {
    await this.#session.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
