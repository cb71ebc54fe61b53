// The requests a coordinator sends a load worker and what each answers (see ./protocol.ts for
// the framing and the session). Shared by the worker's server and the coordinator's handles.

import type { AckMode, BrokerProcess, DriverSettings } from "../driver.ts";
import type { ClientPlan } from "./session.ts";

export type TopicSpec = { name: string; partitions: number };
export type SubscriptionSpec = { topic: string; name: string };

/** Makes the worker's driver instance and tells it about the run's topics. */
export type SetupRequest = {
  driver: string;
  options: Record<string, string>;
  /**
   * The worker creates the topics and subscriptions itself (and deletes them at close): the
   * broker lives in the worker (sluice-embedded). Otherwise it attaches to the coordinator's.
   */
  ownsTopics: boolean;
  topics: TopicSpec[];
  subscriptions: SubscriptionSpec[];
  /** Worker clock − coordinator clock, ms: the worker subtracts it from its own readings. */
  clockOffsetMs: number;
  /** The workload's ackMode (absent: stream), handed to the driver's config. */
  ackMode?: AckMode;
  /** The workload's priorityLevels (absent or 0: none), handed to the driver's config. */
  priorityLevels?: number;
  /** The workload's deliveryDelayMsMax (absent or 0: none), handed to the driver's config. */
  deliveryDelayMsMax?: number;
};

export type SetupReply = {
  settings: DriverSettings;
  durability: string;
  brokerProcess: BrokerProcess | null;
};

/** What a worker says about itself in its challenge. */
export type WorkerIdentity = {
  pid: number;
  host: string;
  runtime: string;
  cores: number;
};

export type ClientsRequest = { plan: ClientPlan };
export type CloseReply = { problems: string[] };

/** A driver that cannot run in the worker (its system is missing there): skip it, as locally. */
export type UnavailableReply = { unavailable: true; error: string; hint: string };
