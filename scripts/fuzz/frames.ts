// The frame fuzzer's generator: from a seeded PRNG, cases of a few request frames each for
// every API of PROTOCOL.md, valid or not. Each frame starts as a valid request (any API, any
// served version) and is then, most of the time, damaged in one of the ways a broken or
// hostile client would: bit flips, boundary values written over counts and lengths, the
// payload cut short or padded, the size prefix lying (larger than the frame, larger than any
// limit), the API key or version swapped, another API's body, or a control body replaced by
// hostile MessagePack (deep, huge counts, extension types, junk).
//
//   case = [handshake?] frame frame ... [probe]      probe: a valid Stats the server must answer
//                                                    (absent when the stream ends mid-frame)

import { writeMsgpack } from "../../protocol/codec/control.ts";
import { writeFetchRequest } from "../../protocol/codec/fetch.ts";
import { API, finishFrame, startRequest } from "../../protocol/codec/frames.ts";
import { writeHandshakeRequest } from "../../protocol/codec/handshake.ts";
import { writeProduceRequest } from "../../protocol/codec/produce.ts";
import type { Writer } from "../../protocol/codec/wire.ts";
import { type CompressionName, encodeRecordBatch } from "../../record/mod.ts";

/** The topic every fuzz server has (FUZZ_PARTITIONS partitions); others are made on the way. */
export const FUZZ_TOPIC = "fuzz";
export const FUZZ_PARTITIONS = 3;
/** The correlation id of the probe that ends a case; generated frames never use it. */
export const PROBE_CORRELATION_ID = 0x7fff_fff7;

export type Random = {
  /** An integer in [0, below). */
  int(below: number): number;
  pick<T>(items: readonly T[]): T;
  chance(probability: number): boolean;
  bytes(length: number): Uint8Array;
};

/** mulberry32: small, fast and well mixed; the same seed gives the same cases on any runtime. */
export function seededRandom(seed: number): Random {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const random: Random = {
    int: (below) => Math.floor(next() * below),
    pick: (items) => items[random.int(items.length)]!,
    chance: (probability) => next() < probability,
    bytes: (length) => {
      const bytes = new Uint8Array(length);
      for (let i = 0; i < length; i++) bytes[i] = random.int(256);
      return bytes;
    },
  };
  return random;
}

export type FuzzCase = {
  /** A valid Handshake goes first. */
  handshake: boolean;
  /** The fuzzed bytes, one entry per frame as built (possibly cut short or lying). */
  frames: Uint8Array[];
  /** The stream ends inside a frame: nothing can follow it, so there is no probe. */
  cut: boolean;
  /** What each frame is, for a person reading a saved case. */
  notes: string[];
};

type Body = { apiKey: number; version: number; write: (writer: Writer) => void; note: string };

function topicName(r: Random): string {
  return r.pick([FUZZ_TOPIC, FUZZ_TOPIC, FUZZ_TOPIC, `fuzz-tmp-${r.int(4)}`, "missing", ""]);
}

function groupId(r: Random): string {
  return r.pick(["g", "g", "readers", "", "x".repeat(256), "é".repeat(128)]);
}

function someBatch(r: Random): Uint8Array {
  const count = 1 + r.int(4);
  const records = Array.from({ length: count }, () => ({
    key: r.chance(0.5) ? r.bytes(r.int(8)) : null,
    value: r.chance(0.9) ? r.bytes(r.int(64)) : null,
    headers: r.chance(0.2) ? [{ key: "h", value: r.bytes(3) }] : undefined,
  }));
  const idempotent = r.chance(0.2);
  const compression: CompressionName = r.pick(["none", "none", "none", "gzip", "zstd"]);
  return encodeRecordBatch(records, {
    timestamp: 1_700_000_000_000 + r.int(1_000_000),
    compression,
    ...(idempotent ? { producerId: r.int(4), producerEpoch: 0, baseSequence: r.int(8) * 4 } : {}),
  });
}

/**
 * Batches made once from a fixed seed and picked from for every case: encoding (and gzip or
 * zstd) a fresh batch costs more than sending it, and mutations vary them anyway.
 */
const BATCH_POOL_SIZE = 64;
let batchPool: Uint8Array[] | undefined;

function pooledBatch(r: Random): Uint8Array {
  if (batchPool === undefined) {
    const poolRandom = seededRandom(0x5eed);
    batchPool = Array.from({ length: BATCH_POOL_SIZE }, () => someBatch(poolRandom));
  }
  return r.pick(batchPool);
}

function someRecords(r: Random): Uint8Array {
  const batches = Array.from({ length: 1 + r.int(3) }, () => pooledBatch(r));
  const joined = new Uint8Array(batches.reduce((sum, batch) => sum + batch.length, 0));
  let at = 0;
  for (const batch of batches) {
    joined.set(batch, at);
    at += batch.length;
  }
  return joined;
}

function partitionNumber(r: Random): number {
  return r.chance(0.9) ? r.int(FUZZ_PARTITIONS) : r.pick([FUZZ_PARTITIONS, 1000, 2 ** 31 - 1]);
}

function produceBody(r: Random): Body["write"] {
  const topics = Array.from({ length: 1 + r.int(2) }, () => ({
    topic: topicName(r),
    partitions: Array.from({ length: 1 + r.int(2) }, () => ({
      partition: partitionNumber(r),
      records: someRecords(r),
    })),
  }));
  const acks = r.pick([1, 1, -1, 0] as const);
  return (w) => writeProduceRequest(w, { acks, timeoutMs: 5_000, topics });
}

function fetchBody(r: Random): Body["write"] {
  const topics = Array.from({ length: 1 + r.int(2) }, () => ({
    topic: topicName(r),
    partitions: Array.from({ length: 1 + r.int(3) }, () => ({
      partition: partitionNumber(r),
      fetchOffset: r.chance(0.8) ? r.int(40) : r.pick([-1, 2 ** 40, Number.MAX_SAFE_INTEGER]),
      partitionMaxBytes: r.pick([1, 1024, 65_536, 2 ** 32 - 1]),
    })),
  }));
  return (w) =>
    writeFetchRequest(w, {
      maxWaitMs: r.pick([0, 0, 10, 100]),
      minBytes: r.pick([0, 1, 1_000_000]),
      maxBytes: r.pick([1, 4096, 1_048_576, 2 ** 32 - 1]),
      topics,
    });
}

/** A valid control-plane body (a msgpack map) for `apiKey`. */
function controlBody(r: Random, apiKey: number): unknown {
  const topic = topicName(r);
  switch (apiKey) {
    case API.Metadata:
      return r.chance(0.5) ? {} : { topics: [topic, FUZZ_TOPIC] };
    case API.CreateTopics:
      return {
        topics: [
          {
            name: `fuzz-tmp-${r.int(4)}`,
            partitions: 1 + r.int(2),
            config: r.chance(0.5) ? { fsync: "never", segmentBytes: 65_536 } : {},
          },
        ],
      };
    case API.DeleteTopics:
      return { topics: [`fuzz-tmp-${r.int(4)}`] };
    case API.ListOffsets:
      return {
        topics: [
          { topic, partitions: [{ partition: partitionNumber(r), timestamp: r.int(4) - 2 }] },
        ],
      };
    case API.OffsetCommit:
      return {
        groupId: groupId(r),
        memberId: r.chance(0.7) ? null : "m",
        memberEpoch: r.chance(0.7) ? -1 : r.int(5),
        offsets: [{ topic, partition: partitionNumber(r), offset: r.int(50), metadata: "m" }],
      };
    case API.OffsetFetch:
      return r.chance(0.5)
        ? { groupId: groupId(r) }
        : { groupId: groupId(r), topics: [{ topic, partitions: [0, 1] }] };
    case API.GroupHeartbeat:
      return {
        groupId: groupId(r),
        memberId: r.chance(0.6) ? null : `member-${r.int(3)}`,
        memberEpoch: r.pick([0, 0, 1, 2, -1, 99]),
        topics: r.chance(0.7) ? [FUZZ_TOPIC] : null,
      };
    case API.DescribeGroup:
      return { groupId: groupId(r) };
    default:
      return {};
  }
}

const ALL_APIS = Object.values(API);
/**
 * The APIs valid frames are made for: each once but Produce and Fetch (the data plane, the
 * largest bodies) three times; CreateTopics and DeleteTopics (a directory made or removed,
 * milliseconds each) are drawn apart, for one frame in 25.
 */
const FRAME_APIS = [
  ...ALL_APIS.filter((key) => key !== API.CreateTopics && key !== API.DeleteTopics),
  API.Produce,
  API.Produce,
  API.Fetch,
  API.Fetch,
];

function validBody(r: Random): Body {
  const apiKey = r.chance(0.04) ? r.pick([API.CreateTopics, API.DeleteTopics]) : r.pick(FRAME_APIS);
  if (apiKey === API.Produce) {
    return { apiKey, version: 1 + r.int(2), write: produceBody(r), note: "Produce" };
  }
  if (apiKey === API.Fetch) {
    return { apiKey, version: 1 + r.int(2), write: fetchBody(r), note: "Fetch" };
  }
  if (apiKey === API.Handshake) {
    const request = { clientName: "fuzz", clientVersion: String(r.int(10)) };
    return {
      apiKey,
      version: 1,
      write: (w) => writeHandshakeRequest(w, request),
      note: "Handshake",
    };
  }
  const body = controlBody(r, apiKey);
  return { apiKey, version: 1, write: (w) => writeMsgpack(w, body), note: `api ${apiKey}` };
}

export function frameOf(
  apiKey: number,
  version: number,
  correlationId: number,
  body: Body["write"],
) {
  const writer = startRequest({ apiKey, apiVersion: version, correlationId });
  body(writer);
  return finishFrame(writer);
}

export function handshakeFrame(): Uint8Array {
  return frameOf(API.Handshake, 1, 1, (w) =>
    writeHandshakeRequest(w, { clientName: "fuzz", clientVersion: "1" }),
  );
}

export function probeFrame(): Uint8Array {
  return frameOf(API.Stats, 1, PROBE_CORRELATION_ID, (w) => writeMsgpack(w, {}));
}

/** MessagePack no client should send: deep, vast counts, extension types, junk. */
function hostileMsgpack(r: Random): { bytes: Uint8Array; note: string } {
  switch (r.int(6)) {
    case 0: {
      const depth = r.pick([9, 65, 10_000, 200_000]);
      const bytes = new Uint8Array(depth + 1).fill(r.chance(0.5) ? 0x91 : 0x81);
      bytes[depth] = 0xc0;
      return { bytes, note: `nested ${depth} deep` };
    }
    case 1:
      return {
        bytes: new Uint8Array([0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 0x61]),
        note: "map32 of 4 G",
      };
    case 2: {
      // { x: [nil × count] }: 3 bytes of map and key, 5 of array32 header, then the nils.
      const count = r.pick([70_000, 200_000]);
      const bytes = new Uint8Array(8 + count).fill(0xc0);
      bytes.set([0x81, 0xa1, 0x78, 0xdd]);
      new DataView(bytes.buffer).setUint32(4, count);
      return { bytes, note: `array of ${count} nils` };
    }
    case 3:
      return { bytes: Uint8Array.of(0x81, 0xa1, 0x78, 0xc7, 0x02, 0x72, 1, 2), note: "ext 'r'" };
    case 4:
      return { bytes: Uint8Array.of(0x81, 0xcb, ...r.bytes(8), 0xc1), note: "float key, 0xc1" };
    default:
      return { bytes: r.bytes(1 + r.int(64)), note: "random bytes" };
  }
}

const BOUNDARY_U32 = [0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fff_ffff, 0xffff_ffff];

/** Damages a valid frame in place or into a new one; says how. `cut` when it ends mid-frame. */
function mutate(r: Random, frame: Uint8Array): { frame: Uint8Array; note: string; cut: boolean } {
  const view = () => new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  switch (r.int(9)) {
    case 0: {
      const flips = 1 + r.int(8);
      for (let i = 0; i < flips; i++) frame[4 + r.int(frame.length - 4)]! ^= 1 << r.int(8);
      return { frame, note: `${flips} bits flipped`, cut: false };
    }
    case 1: {
      const at = 4 + r.int(Math.max(1, frame.length - 8));
      const value = r.pick(BOUNDARY_U32);
      if (at + 4 <= frame.length) view().setUint32(at, value);
      return { frame, note: `u32 ${value} at ${at}`, cut: false };
    }
    case 2: {
      const at = 4 + r.int(Math.max(1, frame.length - 6));
      const value = r.pick([0, 1, 0x7fff, 0x8000, 0xffff]);
      if (at + 2 <= frame.length) view().setUint16(at, value);
      return { frame, note: `u16 ${value} at ${at}`, cut: false };
    }
    case 3: {
      // The payload cut short, the size prefix telling the truth about it.
      const keep = 4 + r.int(frame.length - 4);
      const cut = frame.slice(0, keep);
      new DataView(cut.buffer).setUint32(0, keep - 4);
      return { frame: cut, note: `payload cut to ${keep - 4} bytes`, cut: false };
    }
    case 4: {
      const padded = new Uint8Array(frame.length + 1 + r.int(32));
      padded.set(frame);
      padded.set(r.bytes(padded.length - frame.length), frame.length);
      new DataView(padded.buffer).setUint32(0, padded.length - 4);
      return {
        frame: padded,
        note: `${padded.length - frame.length} junk bytes after`,
        cut: false,
      };
    }
    case 5: {
      // The size prefix lies: the stream ends inside the frame, or the size is past any limit.
      const size = r.pick([frame.length + 100, 70_000, 0x4000_0000, 0xffff_ffff]);
      view().setUint32(0, size);
      return { frame, note: `size prefix ${size}`, cut: true };
    }
    case 6: {
      view().setUint16(4, r.pick([...ALL_APIS, 13, 999, 0xffff]));
      view().setUint16(6, r.pick([0, 1, 2, 3, 0xffff]));
      return { frame, note: `api ${view().getUint16(4)} v${view().getUint16(6)}`, cut: false };
    }
    case 7: {
      const bytes = r.bytes(r.int(40));
      const frameBytes = frameOf(r.pick(ALL_APIS), 1 + r.int(2), r.int(1000), (w) => w.raw(bytes));
      return { frame: frameBytes, note: `${bytes.length} random body bytes`, cut: false };
    }
    default: {
      const hostile = hostileMsgpack(r);
      const apiKey = r.pick(ALL_APIS.filter((k) => k > API.Handshake && k !== API.Produce));
      const bytes = frameOf(apiKey === API.Fetch ? API.Stats : apiKey, 1, r.int(1000), (w) =>
        w.raw(hostile.bytes),
      );
      return { frame: bytes, note: `hostile msgpack (${hostile.note})`, cut: false };
    }
  }
}

/** Frames in a case at most: more per case means fewer connections and probes per frame. */
export const CASE_FRAMES_MAX = 8;

/** One case: a handshake most of the time, then a few frames, most of them damaged. */
export function makeCase(r: Random): FuzzCase {
  const fuzzCase: FuzzCase = { handshake: r.chance(0.9), frames: [], cut: false, notes: [] };
  const count = 1 + r.int(CASE_FRAMES_MAX);
  for (let i = 0; i < count && !fuzzCase.cut; i++) {
    const body = validBody(r);
    const valid = frameOf(body.apiKey, body.version, r.int(1_000_000), body.write);
    if (r.chance(0.25)) {
      fuzzCase.frames.push(valid);
      fuzzCase.notes.push(`${body.note} v${body.version}`);
      continue;
    }
    const damaged = mutate(r, valid);
    fuzzCase.frames.push(damaged.frame);
    fuzzCase.notes.push(`${body.note} v${body.version}: ${damaged.note}`);
    fuzzCase.cut = damaged.cut;
  }
  return fuzzCase;
}
