// The queue exchanges shown in PROTOCOL.md section 10, built from the codecs and run against a
// real server by spec_queue_examples.test.ts. Member ids are the server's (random), so the
// requests are built for the id the server gave; the spec shows EXAMPLE_MEMBER_ID, which has
// the length of every id the server hands out. The answers hold no member id and are compared
// byte for byte.

import { API, finishFrame, startRequest } from "../../../protocol/codec/frames.ts";
import { writeQueueAckRequest } from "../../../protocol/codec/queue_ack.ts";
import { writeQueueFetchRequest } from "../../../protocol/codec/queue_fetch.ts";

export const EXAMPLE_QUEUE = "demo-work";
export const EXAMPLE_MEMBER_ID = "0mWRJpZDQfWbDoeyyyqFRg-0";

export function exampleQueueFetchRequest(memberId: string): Uint8Array {
  const writer = startRequest({ apiKey: API.QueueFetch, apiVersion: 1, correlationId: 20 });
  writeQueueFetchRequest(writer, {
    maxWaitMs: 500,
    maxRecords: 100,
    maxBytes: 1_048_576,
    queue: EXAMPLE_QUEUE,
    memberId,
    acks: [],
  });
  return finishFrame(writer);
}

export function exampleQueueAckRequest(memberId: string): Uint8Array {
  const writer = startRequest({ apiKey: API.QueueAck, apiVersion: 1, correlationId: 21 });
  writeQueueAckRequest(writer, {
    queue: EXAMPLE_QUEUE,
    memberId,
    partitions: [{ partition: 0, ranges: [{ first: 0, last: 0, type: "accept" }] }],
  });
  return finishFrame(writer);
}

/**
 * The hex of every ```hex block in the section opened by `heading` (up to the next `## `
 * heading), annotations (after ';') removed.
 */
export function hexBlocksAfter(markdown: string, heading: string): string[] {
  const at = markdown.indexOf(heading);
  if (at === -1) throw new Error(`no heading ${heading}`);
  const next = markdown.indexOf("\n## ", at + heading.length);
  const section = markdown.slice(at, next === -1 ? markdown.length : next);
  const blocks: string[] = [];
  for (const match of section.matchAll(/```hex\n([\s\S]*?)```/g)) {
    const lines = match[1]!.split("\n").map((line) => line.split(";")[0]!.replace(/\s+/g, ""));
    blocks.push(lines.join(""));
  }
  return blocks;
}

/** Section 10a: a QueueFetch v2 carrying the accept of offset 0, answering at once. */
export function exampleQueueFetchV2Request(memberId: string): Uint8Array {
  const writer = startRequest({ apiKey: API.QueueFetch, apiVersion: 2, correlationId: 30 });
  writeQueueFetchRequest(writer, {
    maxWaitMs: 0,
    maxRecords: 100,
    maxBytes: 1_048_576,
    queue: EXAMPLE_QUEUE,
    memberId,
    acks: [{ partition: 0, ranges: [{ first: 0, last: 0, type: "accept" }] }],
  });
  return finishFrame(writer);
}

/** Section 10a: a QueueAck v2 with no partitions, answered once the accept is durable. */
export function exampleQueueAckV2Request(memberId: string): Uint8Array {
  const writer = startRequest({ apiKey: API.QueueAck, apiVersion: 2, correlationId: 31 });
  writeQueueAckRequest(writer, { queue: EXAMPLE_QUEUE, memberId, partitions: [] });
  return finishFrame(writer);
}
