// A Produce request frame (PROTOCOL.md sections 2 and 5) built around the batches where they
// lie: the bytes that precede each batch in the request are written into the room its buffer
// keeps in front of it (batch_builder.ts), and the frame is one view per batch. No batch is
// copied and no small chunk is written on its own.
//
//   frame   = size:u32 api_key:u16 api_version:u16 correlation_id:u32
//             acks:i8 timeout_ms:u32 topics:[ topic:string partitions:[ partition:u32
//                                                                        records:bytes32 ] ]
//
//   chunk 1: [size api ver corr acks timeout topic_count topic part_count partition len|batch]
//   chunk 2:                                                          [partition len|batch]
//   chunk 3:                                   [topic part_count partition len|batch]   (topic 2)
//
// The bytes are those `writeProduceRequest` (codec/produce.ts) writes for the same request.

import { API } from "../codec/frames.ts";
import type { Acks } from "../codec/produce.ts";
import { STRING_BYTES_MAX } from "../codec/wire.ts";
import type { BatchBuilder } from "./batch_builder.ts";

export const PRODUCE_API_VERSION = 1;
/** size, api_key, api_version, correlation_id, acks, timeout_ms, topic count. */
const REQUEST_HEAD_BYTES = 4 + 2 + 2 + 4 + 1 + 4 + 2;
/** A topic entry's bytes besides the name's: its length and the partition count. */
const TOPIC_ENTRY_BYTES = 2 + 2;
/** partition, records length. */
const PARTITION_ENTRY_BYTES = 4 + 4;

const utf8 = new TextEncoder();

/** The room a batch for `topic` keeps in front of it: the most that can precede it. */
export function prefixRoomBytes(topic: string): number {
  return REQUEST_HEAD_BYTES + TOPIC_ENTRY_BYTES + utf8.encode(topic).length + PARTITION_ENTRY_BYTES;
}

export type FrameBatch = {
  topic: string;
  partition: number;
  /** Sealed and stamped, with `prefixRoomBytes(topic)` of room. */
  builder: BatchBuilder<unknown>;
};

export type ProduceFrameHeader = { correlationId: number; acks: Acks; timeoutMs: number };

/**
 * The frame's chunks, in order. `batches` must list each topic's batches together; the result
 * views the builders' buffers, whose prefixes it overwrites.
 */
export function produceFrame(header: ProduceFrameHeader, batches: FrameBatch[]): Uint8Array[] {
  const topics = topicRuns(batches);
  let sizeBytes = REQUEST_HEAD_BYTES;
  for (const run of topics) sizeBytes += TOPIC_ENTRY_BYTES + run.name.length;
  for (const { builder } of batches) sizeBytes += PARTITION_ENTRY_BYTES + builder.sizeBytes;
  const chunks: Uint8Array[] = [];
  for (let t = 0; t < topics.length; t++) {
    const run = topics[t]!;
    for (let i = run.start; i < run.end; i++) {
      const { partition, builder } = batches[i]!;
      let prefix = PARTITION_ENTRY_BYTES;
      if (i === run.start) prefix += TOPIC_ENTRY_BYTES + run.name.length;
      if (i === 0) prefix += REQUEST_HEAD_BYTES;
      const room = builder.prefixRoomBytes;
      if (prefix > room) throw new RangeError(`a batch has ${room} bytes of room, not ${prefix}`);
      const bytes = builder.buffer;
      let at = room - prefix;
      const start = at;
      if (i === 0) at = writeHead(bytes, at, header, sizeBytes - 4, topics.length);
      if (i === run.start) {
        at = writeU16(bytes, at, run.name.length);
        bytes.set(run.name, at);
        at = writeU16(bytes, at + run.name.length, run.end - run.start);
      }
      at = writeU32(bytes, at, partition);
      writeU32(bytes, at, builder.sizeBytes);
      chunks.push(bytes.subarray(start, room + builder.sizeBytes));
    }
  }
  return chunks;
}

type TopicRun = { name: Uint8Array; start: number; end: number };

function topicRuns(batches: FrameBatch[]): TopicRun[] {
  const runs: TopicRun[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < batches.length; i++) {
    const topic = batches[i]!.topic;
    if (i > 0 && topic === batches[i - 1]!.topic) {
      runs[runs.length - 1]!.end = i + 1;
      continue;
    }
    if (seen.has(topic)) throw new TypeError(`the batches of topic ${topic} are not together`);
    seen.add(topic);
    const name = utf8.encode(topic);
    if (name.length > STRING_BYTES_MAX) {
      throw new RangeError(`topic of ${name.length} bytes exceeds ${STRING_BYTES_MAX}`);
    }
    runs.push({ name, start: i, end: i + 1 });
  }
  return runs;
}

function writeHead(
  bytes: Uint8Array,
  at: number,
  header: ProduceFrameHeader,
  payloadBytes: number,
  topicCount: number,
): number {
  let position = writeU32(bytes, at, payloadBytes);
  position = writeU16(bytes, position, API.Produce);
  position = writeU16(bytes, position, PRODUCE_API_VERSION);
  position = writeU32(bytes, position, header.correlationId);
  bytes[position++] = header.acks & 0xff;
  position = writeU32(bytes, position, header.timeoutMs);
  return writeU16(bytes, position, topicCount);
}

function writeU16(bytes: Uint8Array, at: number, value: number): number {
  bytes[at] = value >>> 8;
  bytes[at + 1] = value;
  return at + 2;
}

function writeU32(bytes: Uint8Array, at: number, value: number): number {
  bytes[at] = value >>> 24;
  bytes[at + 1] = value >>> 16;
  bytes[at + 2] = value >>> 8;
  bytes[at + 3] = value;
  return at + 4;
}
