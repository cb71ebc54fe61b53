// The exchanges shown in PROTOCOL.md section 10, built from the codecs and run against a real
// server by spec_examples.test.ts, which checks that the spec's hex is byte for byte what the
// client sends and the server answers.

import { encodeRecordBatch } from "../../engine/mod.ts";
import { writeFetchRequest } from "../../protocol/codec/fetch.ts";
import { API, finishFrame, startRequest } from "../../protocol/codec/frames.ts";
import { writeProduceRequest } from "../../protocol/codec/produce.ts";

/** One record, key "k", value "hello", at a fixed time so the bytes never change. */
export const EXAMPLE_BATCH = encodeRecordBatch(
  [{ key: new TextEncoder().encode("k"), value: new TextEncoder().encode("hello") }],
  { timestamp: 1_700_000_000_000 },
);

export function exampleProduceRequest(): Uint8Array {
  const writer = startRequest({ apiKey: API.Produce, apiVersion: 1, correlationId: 10 });
  writeProduceRequest(writer, {
    acks: 1,
    timeoutMs: 30_000,
    topics: [{ topic: "demo", partitions: [{ partition: 0, records: EXAMPLE_BATCH }] }],
  });
  return finishFrame(writer);
}

export function exampleFetchRequest(): Uint8Array {
  const writer = startRequest({ apiKey: API.Fetch, apiVersion: 1, correlationId: 11 });
  writeFetchRequest(writer, {
    maxWaitMs: 500,
    minBytes: 1,
    maxBytes: 1_048_576,
    topics: [
      { topic: "demo", partitions: [{ partition: 0, fetchOffset: 0, partitionMaxBytes: 65_536 }] },
    ],
  });
  return finishFrame(writer);
}

/** The hex of every ```hex block under a heading, annotations (after ';') removed. */
export function hexBlocks(markdown: string): string[] {
  const blocks: string[] = [];
  for (const match of markdown.matchAll(/```hex\n([\s\S]*?)```/g)) {
    const lines = match[1]!.split("\n").map((line) => line.split(";")[0]!.replace(/\s+/g, ""));
    blocks.push(lines.join(""));
  }
  return blocks;
}
