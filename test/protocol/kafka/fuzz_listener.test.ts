// A seeded fuzzer over a live Kafka listener: valid requests of every served API, then cut,
// flipped, resized or followed by garbage, sent over fresh connections, each followed by an
// ApiVersions probe. Every case must end with the probe answered or the connection closed by
// the server, never with the server stopping, hanging or breaking an invariant; afterwards a
// fresh connection is served. A failure replays from the printed seed (SLUICE_FUZZ_SEED).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { InvariantError } from "../../../record/mod.ts";
import {
  API_KEYS as K,
  codecFor,
  concatChunks,
  KafkaWriter,
  MESSAGES,
  type Struct,
} from "../../../protocol/kafka/mod.ts";
import { mulberry32, waitFor } from "../../helpers.ts";
import { RawKafka, startKafkaServer } from "./kafka_serving.ts";

const CASES = 160;
const FRAME_BYTES_MAX = 1 << 20;
const PROBE_ID = 0x7ead;

function frameOf(apiKey: number, version: number, body: Struct, correlationId: number) {
  const message = MESSAGES.get(apiKey)!;
  const codec = codecFor(message, version);
  const writer = new KafkaWriter();
  writer.int32(0).int16(apiKey).int16(version).int32(correlationId).string("fuzz", false);
  if (codec.flexible) writer.uvarint(0);
  codec.request.encode(writer, body);
  const frame = concatChunks(writer.finish());
  new DataView(frame.buffer).setInt32(0, frame.length - 4);
  return frame;
}

/**
 * A valid request of a random served API and version: every field at its default (the
 * encoder fills in what the body leaves out), naming topic "f" where the API takes topics.
 */
function validFrame(random: () => number): Uint8Array {
  const messages = [...MESSAGES.values()];
  const message = messages[Math.floor(random() * messages.length)]!;
  const version = message.min + Math.floor(random() * (message.max - message.min + 1));
  const partition = { index: 0, partition: 0, partitionIndex: 0, fetchOffset: 0 };
  const topic = { name: "f", topic: "f", partitions: [partition], partitionIndexes: [0] };
  return frameOf(message.key, version, { topics: [topic], groupId: "g", key: "g" }, 1);
}

function mutate(frame: Uint8Array, random: () => number): Uint8Array {
  const kind = Math.floor(random() * 4);
  if (kind === 0) {
    // Cut, with the size prefix rewritten to match the cut frame.
    const cut = frame.slice(0, 4 + Math.floor(random() * (frame.length - 4)));
    new DataView(cut.buffer).setInt32(0, cut.length - 4);
    return cut;
  }
  const out = frame.slice();
  if (kind === 1) {
    for (let flips = 1 + Math.floor(random() * 4); flips > 0; flips--) {
      const at = 4 + Math.floor(random() * (out.length - 4));
      out[at] = Math.floor(random() * 256);
    }
    return out;
  }
  if (kind === 2) {
    // A random size prefix the listener must refuse: negative, or past frameBytesMax. (A size
    // within the limit but past the bytes that follow is a frame still arriving: the listener
    // waits for the rest, as Kafka's broker does, so it has no answer to give yet.)
    const size =
      random() < 0.5
        ? -1 - Math.floor(random() * (2 ** 31 - 1))
        : FRAME_BYTES_MAX + 1 + Math.floor(random() * (2 ** 31 - 2 - FRAME_BYTES_MAX));
    new DataView(out.buffer).setInt32(0, size);
    return out;
  }
  const garbage = Uint8Array.from({ length: 1 + Math.floor(random() * 64) }, () =>
    Math.floor(random() * 256),
  );
  const longer = new Uint8Array(out.length + garbage.length);
  longer.set(out);
  longer.set(garbage, out.length);
  new DataView(longer.buffer).setInt32(0, longer.length - 4);
  return longer;
}

describe("kafka listener fuzzing", () => {
  test("hostile frames end in an answer or a closed connection, never a crash", async () => {
    const seed = Number(process.env["SLUICE_FUZZ_SEED"] ?? Date.now() % 2 ** 31);
    const random = mulberry32(seed);
    const fatal: InvariantError[] = [];
    const internal: string[] = [];
    await using broker = await startKafkaServer({
      server: {
        limits: { fetchWaitMsMax: 50, frameBytesMax: FRAME_BYTES_MAX },
        onFatal: (error) => fatal.push(error),
        log: (line) => {
          if (line.includes("internal error")) internal.push(line);
        },
      },
    });
    await broker.server.engine.createTopic("f", { partitions: 2 });
    const probe = frameOf(K.ApiVersions, 0, {}, PROBE_ID);
    let closed = 0;
    let answered = 0;
    for (let i = 0; i < CASES; i++) {
      const hostile = mutate(validFrame(random), random);
      const client = await RawKafka.connect(broker.port);
      let done = false;
      let wasClosed = false;
      client.closed.then(() => {
        wasClosed = true;
        done = true;
      });
      const readUntilProbe = async () => {
        for (let frames = 0; frames < 4 && !done; frames++) {
          const frame = await client.next();
          if (new DataView(frame.buffer, frame.byteOffset).getInt32(0) === PROBE_ID) done = true;
        }
      };
      readUntilProbe().catch(() => {});
      client.send(hostile);
      client.send(probe);
      await waitFor(() => done, `case ${i} (seed ${seed}) to end`, 5_000);
      if (wasClosed) closed++;
      else answered++;
      client.close();
    }
    assert.deepEqual(fatal, [], `seed ${seed}: no invariant broken`);
    assert.deepEqual(internal, [], `seed ${seed}: bad input is refused as such, not as a bug`);
    assert.equal(closed + answered, CASES);
    const client = await RawKafka.connect(broker.port);
    try {
      const answer = await client.call(K.ApiVersions, 3, {});
      assert.equal(answer["errorCode"], 0, `seed ${seed}: the listener still serves`);
    } finally {
      client.close();
    }
  });
});
