// The queue APIs byte by byte over a raw connection: bad input is refused with a typed error
// naming the value, nothing changes, and the connection stays open; a member whose connection
// drops gives its records to the others at once; acks piggy-backed on a QueueFetch apply first.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { readMsgpack, writeMsgpack } from "../../../protocol/codec/control.ts";
import { WIRE_ERRORS } from "../../../protocol/codec/errors.ts";
import { API } from "../../../protocol/codec/frames.ts";
import {
  type AckPartition,
  type QueueAckResponse,
  readQueueAckResponse,
  writeQueueAckRequest,
} from "../../../protocol/codec/queue_ack.ts";
import {
  type QueueFetchResponse,
  readQueueFetchResponse,
  writeQueueFetchRequest,
} from "../../../protocol/codec/queue_fetch.ts";
import { Reader, type Writer } from "../../../protocol/codec/wire.ts";
import { waitFor } from "../../helpers.ts";
import { RawClient } from "../server/raw_client.ts";
import { declare, publish, statsOf, withServer } from "./queue_helpers.ts";

type Answer = { errorCode: number; body: Uint8Array; message: string };

async function send(client: RawClient, apiKey: number, write: (w: Writer) => void) {
  const id = client.request(apiKey, write);
  const { errorCode, reader } = await client.response(id);
  const body = reader.raw(reader.remaining);
  const message = errorCode === 0 ? "" : new TextDecoder().decode(body.subarray(2));
  return { errorCode, body, message } satisfies Answer;
}

async function control(client: RawClient, apiKey: number, request: object) {
  const answer = await send(client, apiKey, (w) => writeMsgpack(w, request));
  assert.equal(answer.errorCode, 0, answer.message);
  return readMsgpack(new Reader(answer.body), "response");
}

async function join(client: RawClient, queue: string): Promise<string> {
  const joined = await control(client, API.QueueJoin, { queue });
  assert.equal(joined["errorCode"], 0, String(joined["errorMessage"]));
  return joined["memberId"] as string;
}

async function fetch(
  client: RawClient,
  queue: string,
  memberId: string,
  options: { maxRecords?: number; maxWaitMs?: number; acks?: AckPartition[] } = {},
): Promise<QueueFetchResponse> {
  const answer = await send(client, API.QueueFetch, (w) =>
    writeQueueFetchRequest(w, {
      maxWaitMs: options.maxWaitMs ?? 0,
      maxRecords: options.maxRecords ?? 100,
      maxBytes: 1 << 20,
      queue,
      memberId,
      acks: options.acks ?? [],
    }),
  );
  assert.equal(answer.errorCode, 0, answer.message);
  return readQueueFetchResponse(answer.body);
}

async function ack(
  client: RawClient,
  queue: string,
  memberId: string,
  partitions: AckPartition[],
): Promise<QueueAckResponse> {
  const answer = await send(client, API.QueueAck, (w) =>
    writeQueueAckRequest(w, { queue, memberId, partitions }),
  );
  assert.equal(answer.errorCode, 0, answer.message);
  return readQueueAckResponse(new Reader(answer.body));
}

const accept = (first: number, last: number): AckPartition[] => [
  { partition: 0, ranges: [{ first, last, type: "accept" }] },
];

describe("queue APIs on the wire", () => {
  test("bad input is refused naming the value; nothing changes; the connection stays", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "q", { topic: "t" });
      await publish(port, "t", ["0", "1", "2"]);
      const client = await RawClient.connect(port);
      try {
        await client.handshake();
        const a = await join(client, "q");
        const b = await join(client, "q");
        const fetched = await fetch(client, "q", a, { maxRecords: 2 });
        assert.deepEqual(fetched.partitions[0]!.acquired, [
          { first: 0, last: 1, deliveryCount: 1 },
        ]);
        const unchanged = async () => {
          const stats = await statsOf(admin, "q");
          assert.deepEqual([stats.acquired, stats.ready, stats.accepted], [2, 1, 0]);
        };

        // Records another member holds; a range past what anyone holds; an unknown partition.
        const notHeld = await ack(client, "q", b, accept(0, 0));
        assert.equal(notHeld.partitions[0]!.errorCode, WIRE_ERRORS.INVALID_RECORD_STATE);
        assert.match(notHeld.partitions[0]!.errorMessage!, /\b0\b/);
        const beyond = await ack(client, "q", a, accept(0, 5));
        assert.equal(beyond.partitions[0]!.errorCode, WIRE_ERRORS.INVALID_RECORD_STATE);
        assert.match(beyond.partitions[0]!.errorMessage!, /\b2\b/);
        const noPartition = await ack(client, "q", a, [
          { partition: 7, ranges: [{ first: 0, last: 0, type: "accept" }] },
        ]);
        assert.equal(noPartition.partitions[0]!.errorCode, WIRE_ERRORS.UNKNOWN_PARTITION);
        await unchanged();

        // Unknown queue and member: the request's own code.
        const noQueue = await ack(client, "nope", a, accept(0, 0));
        assert.equal(noQueue.errorCode, WIRE_ERRORS.UNKNOWN_QUEUE);
        assert.match(noQueue.errorMessage!, /nope/);
        const noMember = await ack(client, "q", "who", accept(0, 0));
        assert.equal(noMember.errorCode, WIRE_ERRORS.UNKNOWN_MEMBER_ID);
        const fetchNoQueue = await fetch(client, "nope", a);
        assert.equal(fetchNoQueue.errorCode, WIRE_ERRORS.UNKNOWN_QUEUE);
        const fetchNoMember = await fetch(client, "q", "who");
        assert.equal(fetchNoMember.errorCode, WIRE_ERRORS.UNKNOWN_MEMBER_ID);
        assert.match(fetchNoMember.errorMessage!, /who/);

        // Malformed: the request-level INVALID_REQUEST, naming the value.
        const badType = await send(client, API.QueueAck, (w) =>
          w.string("q").string(a).u16(1).u32(0).u16(1).i64(0).i64(0).u8(9),
        );
        assert.equal(badType.errorCode, WIRE_ERRORS.INVALID_REQUEST);
        assert.match(badType.message, /ack type 9/);
        const overlap = await send(client, API.QueueAck, (w) =>
          writeQueueAckRequest(w, {
            queue: "q",
            memberId: a,
            partitions: [
              {
                partition: 0,
                ranges: [
                  { first: 0, last: 1, type: "accept" },
                  { first: 1, last: 1, type: "release" },
                ],
              },
            ],
          }),
        );
        assert.equal(overlap.errorCode, WIRE_ERRORS.INVALID_REQUEST);
        assert.match(overlap.message, /0..1 and 1..1 of partition 0 overlap/);
        const noRecords = await send(client, API.QueueFetch, (w) =>
          writeQueueFetchRequest(w, {
            maxWaitMs: 0,
            maxRecords: 0,
            maxBytes: 1,
            queue: "q",
            memberId: a,
            acks: accept(0, 1),
          }),
        );
        assert.equal(noRecords.errorCode, WIRE_ERRORS.INVALID_REQUEST);
        assert.match(noRecords.message, /max_records 0/);
        await unchanged();

        // Declares that cannot be, and a join of a queue that is not.
        const tooShort = await control(client, API.QueueDeclare, {
          name: "q2",
          topic: "t",
          lockMs: 5,
        });
        assert.equal(tooShort["errorCode"], WIRE_ERRORS.INVALID_QUEUE);
        assert.match(String(tooShort["errorMessage"]), /lockMs 5/);
        const differs = await control(client, API.QueueDeclare, {
          name: "q",
          topic: "t",
          from: "beginning",
          lockMs: 2000,
        });
        assert.equal(differs["errorCode"], WIRE_ERRORS.QUEUE_EXISTS);
        assert.match(String(differs["errorMessage"]), /lockMs/);
        const noTopic = await control(client, API.QueueDeclare, { name: "q3", topic: "none" });
        assert.equal(noTopic["errorCode"], WIRE_ERRORS.INVALID_QUEUE);
        const joinNone = await control(client, API.QueueJoin, { queue: "none" });
        assert.equal(joinNone["errorCode"], WIRE_ERRORS.UNKNOWN_QUEUE);

        // After all that, the same connection still serves, and the records are still A's.
        const done = await ack(client, "q", a, accept(0, 1));
        assert.deepEqual(done, {
          errorCode: 0,
          errorMessage: null,
          partitions: [{ partition: 0, errorCode: 0, errorMessage: null }],
        });
        assert.equal(client.closed, false);
        const stats = await statsOf(admin, "q");
        assert.deepEqual([stats.acquired, stats.ready, stats.accepted], [0, 1, 2]);
      } finally {
        client.close();
      }
    });
  });

  test("a member whose connection drops gives its records to the others at once", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "q", { topic: "t" });
      await publish(port, "t", ["a", "b"]);
      const leaving = await RawClient.connect(port);
      const staying = await RawClient.connect(port);
      try {
        await leaving.handshake();
        await staying.handshake();
        const gone = await join(leaving, "q");
        const here = await join(staying, "q");
        const first = await fetch(leaving, "q", gone);
        assert.equal(first.partitions[0]!.acquired[0]!.last, 1);
        assert.equal((await fetch(staying, "q", here)).partitions.length, 0);
        const polled = fetch(staying, "q", here, { maxWaitMs: 10_000 });
        leaving.close();
        const again = await polled;
        assert.deepEqual(again.partitions[0]!.acquired, [{ first: 0, last: 1, deliveryCount: 2 }]);
        await waitFor(async () => (await statsOf(admin, "q")).members === 1, "the member to go");
      } finally {
        leaving.close();
        staying.close();
      }
    });
  });

  test("acks piggy-backed on a fetch apply first; the answer carries their results", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "q", { topic: "t" });
      await publish(port, "t", ["a", "b", "c"]);
      const client = await RawClient.connect(port);
      try {
        await client.handshake();
        const member = await join(client, "q");
        await fetch(client, "q", member);
        const next = await fetch(client, "q", member, {
          acks: [
            {
              partition: 0,
              ranges: [
                { first: 0, last: 1, type: "accept" },
                { first: 2, last: 2, type: "release" },
              ],
            },
          ],
        });
        assert.deepEqual(next.acks, [{ partition: 0, errorCode: 0, errorMessage: null }]);
        // The released record came back in the same answer, one delivery higher.
        assert.deepEqual(next.partitions[0]!.acquired, [{ first: 2, last: 2, deliveryCount: 2 }]);
        const refused = await fetch(client, "q", member, { acks: accept(0, 0) });
        assert.equal(refused.acks[0]!.errorCode, WIRE_ERRORS.INVALID_RECORD_STATE);
        assert.equal(refused.errorCode, 0);
        const stats = await statsOf(admin, "q");
        assert.deepEqual([stats.accepted, stats.acquired], [2, 1]);
      } finally {
        client.close();
      }
    });
  });
});
