// Topic ids for the Kafka APIs that name topics by id (Metadata 10+, KIP-848's heartbeat). A
// topic's id is derived from its name and creation time, so it is stable across restarts and
// differs between a topic and a later topic of the same name, without storing anything new:
// the first 16 bytes of SHA-256(name, createdMs), marked as a version 4 / variant 1 UUID.

import { createHash } from "node:crypto";
import type { Engine, TopicInfo } from "../../engine/mod.ts";

const ids = new Map<string, Uint8Array>();
/** Ids kept computed; past it the cache starts again (ids are cheap to compute). */
const IDS_CACHED_MAX = 100_000;

export function topicId(info: TopicInfo): Uint8Array {
  const key = `${info.name}\u0000${info.createdMs}`;
  let id = ids.get(key);
  if (id === undefined) {
    id = new Uint8Array(createHash("sha256").update(key).digest().subarray(0, 16));
    id[6] = (id[6]! & 0x0f) | 0x40;
    id[8] = (id[8]! & 0x3f) | 0x80;
    if (ids.size >= IDS_CACHED_MAX) ids.clear();
    ids.set(key, id);
  }
  return id;
}

/** The topic with this id, or undefined. */
export function topicById(engine: Engine, id: Uint8Array): TopicInfo | undefined {
  return engine.listTopics().find((info) => sameId(topicId(info), id));
}

function sameId(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return false;
  return true;
}
