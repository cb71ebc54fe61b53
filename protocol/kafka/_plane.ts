// What every Kafka request handler is given: the shared engine, groups and limits (the
// KafkaPlane), and where the request came from.

import type { Engine, GroupCoordinator } from "../../engine/mod.ts";
import type { CallbackList } from "../../record/mod.ts";
import type { ServerLimits } from "../server/limits.ts";
import type { ClassicGroups } from "./classic_groups.ts";
import type { Struct } from "./schema.ts";
import type { VersionCaps } from "./versions.ts";
import type { KafkaSecurity, KafkaSession, SessionPeer } from "./_security.ts";

export type KafkaPlane = {
  engine: Engine;
  /** sluice's own (KIP-848-style) groups: one group-id space with the classic ones. */
  groups: GroupCoordinator;
  classic: ClassicGroups;
  limits: ServerLimits;
  advertised: { host: string; port: () => number };
  autoCreateTopics: boolean;
  autoCreatePartitions: number;
  caps: VersionCaps;
  /** Long polls waiting now, so shutdown can answer them at once. */
  waitingFetches: CallbackList;
  log: (message: string) => void;
  /** Fetch answers batches as views of the log: these count views and bytes, never records. */
  stats: { fetchBatchViews: number; fetchBytes: number; produceBatches: number };
  /** SASL and ACLs, with authentication on. */
  security: KafkaSecurity | undefined;
};

export type RequestInfo = {
  apiVersion: number;
  clientId: string | null;
  remoteAddress: string;
  connection: {
    readonly closed: boolean;
    onClose(listener: () => void): () => void;
    readonly session: KafkaSession | undefined;
  } & SessionPeer;
};

export type Handler = (
  plane: KafkaPlane,
  body: Struct,
  info: RequestInfo,
) => Struct | null | Promise<Struct | null>;
