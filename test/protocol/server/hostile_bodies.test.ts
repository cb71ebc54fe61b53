// Hostile MessagePack bodies: a control-plane request is checked against its API's limits on
// size, nesting depth and entries before msgpackr decodes it, so no request holds the event
// loop (and with it every other client) for more than a few milliseconds. Each is answered
// INVALID_REQUEST and the connection goes on.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { writeMsgpack } from "../../../protocol/codec/control.ts";
import { WIRE_ERRORS } from "../../../protocol/codec/errors.ts";
import { writeFetchRequest } from "../../../protocol/codec/fetch.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { SluiceServer } from "../../../protocol/server/mod.ts";
import { tempDir } from "../../helpers.ts";
import type { RawClient } from "./raw_client.ts";
import { connected, startTestServer } from "./serving.ts";

/**
 * One msgpack map32 of `count` distinct keys, each a 7-character fixstr with the value 0:
 * 9 bytes an entry, so 5,000,000 keys are 45,000,005 bytes (42.9 MiB).
 */
function manyKeysMap(count: number): Uint8Array {
  const bytes = new Uint8Array(5 + count * 9);
  bytes[0] = 0xdf;
  new DataView(bytes.buffer).setUint32(1, count);
  let at = 5;
  for (let i = 0; i < count; i++) {
    bytes[at++] = 0xa7;
    let n = i;
    for (let digit = 6; digit >= 0; digit--) {
      bytes[at + digit] = 0x61 + (n % 26);
      n = Math.floor(n / 26);
    }
    at += 7;
    bytes[at++] = 0x00;
  }
  return bytes;
}

/** `{ topics: [ [ [ ... ] ] ] }` nested `depth` arrays deep. */
function deeplyNested(depth: number): Uint8Array {
  const head = new Uint8Array([0x81, 0xa6, ...new TextEncoder().encode("topics")]);
  const bytes = new Uint8Array(head.length + depth + 1);
  bytes.set(head);
  bytes.fill(0x91, head.length, head.length + depth);
  bytes[bytes.length - 1] = 0xc0;
  return bytes;
}

/** Round trips of a well-behaved client, one after another, until `until` settles. */
async function pingWhile(port: number, until: Promise<unknown>): Promise<number[]> {
  using client = await connected(port);
  const latenciesMs: number[] = [];
  let done = false;
  until.finally(() => {
    done = true;
  });
  while (!done) {
    const startedMs = performance.now();
    const id = client.request(API.Stats, (w) => writeMsgpack(w, {}));
    assert.equal((await client.response(id)).errorCode, 0);
    latenciesMs.push(performance.now() - startedMs);
  }
  return latenciesMs;
}

async function refused(client: RawClient, apiKey: number, body: Uint8Array): Promise<string> {
  const id = client.request(apiKey, (w) => w.raw(body));
  const { errorCode, reader } = await client.response(id);
  assert.equal(errorCode, WIRE_ERRORS.INVALID_REQUEST, `api ${apiKey}: error code ${errorCode}`);
  return reader.string("error_message");
}

const CONTROL_APIS = [
  API.Metadata,
  API.CreateTopics,
  API.DeleteTopics,
  API.ListOffsets,
  API.OffsetCommit,
  API.OffsetFetch,
  API.GroupHeartbeat,
  API.DescribeGroup,
  API.InitProducerId,
  API.Stats,
];

describe("hostile MessagePack bodies", () => {
  test("a 43 MiB body of 5 M keys is refused without stalling other clients", async () => {
    await using t = await startTestServer();
    using hostile = await connected(t.port);
    const body = manyKeysMap(5_000_000);
    const answered = refused(hostile, API.Metadata, body);
    const latenciesMs = await pingWhile(t.port, answered);
    const message = await answered;
    assert.match(message, /bytes|entries/);
    const worstMs = Math.max(...latenciesMs);
    // Decoding this body whole held the event loop for seconds; refusing it takes microseconds
    // (receiving 43 MiB over loopback is what the pings wait for here).
    assert.ok(worstMs < 500, `a ping waited ${worstMs.toFixed(1)} ms`);
    const after = hostile.request(API.Stats, (w) => writeMsgpack(w, {}));
    assert.equal((await hostile.response(after)).errorCode, 0);
  });

  test("every control API refuses a body past its entries, depth and size limits", async () => {
    await using t = await startTestServer();
    using client = await connected(t.port);
    const tooManyEntries = manyKeysMap(70_000);
    const tooDeep = deeplyNested(100_000);
    const tooLarge = new Uint8Array(5 * 1024 * 1024);
    tooLarge.set([0x81, 0xa1, 0x78, 0xdb]);
    new DataView(tooLarge.buffer).setUint32(4, tooLarge.length - 8);
    for (const apiKey of CONTROL_APIS) {
      assert.match(await refused(client, apiKey, tooManyEntries), /entries|keys|bytes/);
      assert.match(await refused(client, apiKey, tooDeep), /depth|bytes/);
      assert.match(await refused(client, apiKey, tooLarge), /bytes/);
    }
    const after = client.request(API.Stats, (w) => writeMsgpack(w, {}));
    assert.equal((await client.response(after)).errorCode, 0);
  });

  test("counts past the body's end, extension types and trailing bytes are refused", async () => {
    await using t = await startTestServer();
    using client = await connected(t.port);
    const bodies = [
      new Uint8Array([0xdf, 0xff, 0xff, 0xff, 0xff]), // map32 of 4 G entries, then nothing
      new Uint8Array([0x81, 0xa1, 0x78, 0xdd, 0x7f, 0xff, 0xff, 0xff]), // array32 past the end
      new Uint8Array([0x81, 0xa1, 0x78, 0xd7, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]), // ext -1 (time)
      new Uint8Array([0x80, 0xc0]), // {} then a second value
      new Uint8Array([0x81, 0x01, 0x02]), // { 1: 2 }: keys are strings
      new Uint8Array([0x81, 0xa1, 0x78, 0xdb, 0xff, 0xff, 0xff, 0xff]), // str32 past the end
    ];
    for (const body of bodies) await refused(client, API.Metadata, body);
    const after = client.request(API.Stats, (w) => writeMsgpack(w, {}));
    assert.equal((await client.response(after)).errorCode, 0);
  });
});

function fetchOf(topics: { topic: string; partitions: number }[]) {
  return (w: Parameters<typeof writeFetchRequest>[0]) =>
    writeFetchRequest(w, {
      maxWaitMs: 0,
      minBytes: 0,
      maxBytes: 1024,
      topics: topics.map(({ topic, partitions }) => ({
        topic,
        partitions: Array.from({ length: partitions }, (_, partition) => ({
          partition,
          fetchOffset: 0,
          partitionMaxBytes: 1024,
        })),
      })),
    });
}

describe("hostile data-plane requests", () => {
  test("a Fetch past requestPartitionsMax entries is refused from its counts", async () => {
    await using t = await startTestServer();
    using client = await connected(t.port);
    const id = client.request(
      API.Fetch,
      fetchOf([
        { topic: "a", partitions: 40_000 },
        { topic: "b", partitions: 40_000 },
      ]),
    );
    const { errorCode, reader } = await client.response(id);
    assert.equal(errorCode, WIRE_ERRORS.INVALID_REQUEST);
    assert.match(reader.string("error_message"), /requestPartitionsMax/);
  });

  test("65,536 entries for partitions that do not exist are answered without a stall", async () => {
    await using t = await startTestServer();
    await t.server.engine.createTopic("one");
    using client = await connected(t.port);
    const id = client.request(
      API.Fetch,
      fetchOf([
        { topic: "missing", partitions: 32_768 },
        { topic: "one", partitions: 32_768 },
      ]),
    );
    const answered = client.response(id);
    const latenciesMs = await pingWhile(t.port, answered);
    const { errorCode } = await answered;
    assert.equal(errorCode, 0);
    const worstMs = Math.max(...latenciesMs);
    // An Error built for each entry took 300 ms here; one lookup per topic takes a few.
    assert.ok(worstMs < 200, `a ping waited ${worstMs.toFixed(1)} ms`);
  });

  test("limits outside their ranges are refused before anything is opened", async () => {
    using dir = tempDir();
    const dataDir = join(dir.path, "never-made");
    const bad = [{ inFlightMax: 70_000 }, { frameReadTimeoutMs: 0 }, { controlBodyDepthMax: 65 }];
    for (const limits of bad) {
      await assert.rejects(SluiceServer.start({ dataDir, port: 0, limits }), RangeError);
    }
    assert.equal(fs.existsSync(dataDir), false);
  });
});
