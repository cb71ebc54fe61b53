// A broken invariant while serving a request is a bug in sluice: the server never answers it
// as an error code; it calls `onFatal` (by default: one line on stderr, exit code 70).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeRecordBatch, type PartitionLog } from "../../../engine/mod.ts";
import { writeFetchRequest } from "../../../protocol/codec/fetch.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { writeProduceRequest } from "../../../protocol/codec/produce.ts";
import { EXIT_CODE_INVARIANT, SluiceServer } from "../../../protocol/server/mod.ts";
import { assert as invariant, InvariantError } from "../../../record/mod.ts";
import { runScript, tempDir, waitFor } from "../../helpers.ts";
import { RawClient } from "./raw_client.ts";

type Harness = {
  server: SluiceServer;
  client: RawClient;
  log: PartitionLog;
  fatal: InvariantError[];
  logged: string[];
} & AsyncDisposable;

/** A server whose `onFatal` records instead of exiting, a topic "t", and a handshaken client. */
async function harness(dataDir: string): Promise<Harness> {
  const fatal: InvariantError[] = [];
  const logged: string[] = [];
  const server = await SluiceServer.start({
    dataDir,
    port: 0,
    engineOptions: { onWarning: () => {} },
    log: (message) => logged.push(message),
    onFatal: (error) => fatal.push(error),
  });
  await server.engine.createTopic("t");
  const client = await RawClient.connect(server.port);
  await client.handshake();
  const log = server.engine.partition("t", 0);
  return {
    server,
    client,
    log,
    fatal,
    logged,
    async [Symbol.asyncDispose]() {
      client.close();
      await server.close(0);
    },
  };
}

function fetchFrom(client: RawClient, options: { maxWaitMs: number; minBytes: number }): number {
  return client.request(API.Fetch, (w) =>
    writeFetchRequest(w, {
      ...options,
      maxBytes: 1 << 20,
      topics: [
        { topic: "t", partitions: [{ partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20 }] },
      ],
    }),
  );
}

const batch = () => encodeRecordBatch([{ value: new Uint8Array([1]) }], { timestamp: 1 });

/** The request got no answer at all (no error code either), and the connection was closed. */
async function unanswered(h: Harness, correlationId: number): Promise<void> {
  await assert.rejects(h.client.response(correlationId), /connection closed before response/);
  assert.equal(h.client.frames.length, 1, "only the handshake was ever answered");
}

describe("a broken invariant on the server", () => {
  test("in a produce's append stops the server instead of answering an error code", async () => {
    using dir = tempDir();
    await using h = await harness(dir.path);
    h.log.appendChecked = async () => {
      invariant(false, "append broke");
    };
    // acks 1 appends with a listener instead of a promise (server/_produce_answer.ts).
    h.log.appendTo = () => {
      invariant(false, "append broke");
    };
    const id = h.client.request(API.Produce, (w) =>
      writeProduceRequest(w, {
        acks: 1,
        timeoutMs: 5000,
        topics: [{ topic: "t", partitions: [{ partition: 0, records: batch() }] }],
      }),
    );
    await waitFor(() => h.fatal.length > 0, "onFatal");
    assert.equal(h.fatal.length, 1);
    assert.ok(h.fatal[0] instanceof InvariantError);
    assert.equal(h.fatal[0]!.invariant, "append broke");
    assert.equal(h.fatal[0]!.message, "sluice invariant violated: append broke");
    await unanswered(h, id);
    assert.ok(
      h.logged.some((line) => line.includes(`request ${API.Produce}/${id} broke an invariant`)),
    );
  });

  test("in a fetch's read stops the server instead of answering an error code", async () => {
    using dir = tempDir();
    await using h = await harness(dir.path);
    // Data to read: a fetch at the log's end answers without reading.
    await h.log.append(batch());
    h.log.read = () => {
      invariant(false, "read broke");
    };
    const id = fetchFrom(h.client, { maxWaitMs: 0, minBytes: 0 });
    await waitFor(() => h.fatal.length > 0, "onFatal");
    assert.deepEqual(
      h.fatal.map((error) => error.invariant),
      ["read broke"],
    );
    await unanswered(h, id);
  });

  test("in a parked long poll's read on new data stops the server", async () => {
    using dir = tempDir();
    await using h = await harness(dir.path);
    const id = fetchFrom(h.client, { maxWaitMs: 30_000, minBytes: 1 << 16 });
    await waitFor(
      () => (h.server.stats()["requests"] as Record<string, number>)[String(API.Fetch)] === 1,
      "the poll",
    );
    assert.equal(h.fatal.length, 0, "the first read, before any data, is fine");
    h.log.read = () => {
      invariant(false, "read after new data broke");
    };
    await h.log.append(batch());
    await waitFor(() => h.fatal.length > 0, "onFatal");
    assert.deepEqual(
      h.fatal.map((error) => error.invariant),
      ["read after new data broke"],
    );
    await unanswered(h, id);
  });

  test("by default logs one line to stderr and exits the process with code 70", () => {
    using dir = tempDir();
    const run = runScript("test/protocol/server/invariant_child.ts", [dir.path]);
    assert.equal(run.stdout, "", "the script never reaches its end");
    assert.equal(run.status, EXIT_CODE_INVARIANT, run.stderr);
    assert.equal(EXIT_CODE_INVARIANT, 70);
    assert.match(run.stderr, /^sluice: invariant violated: the test's append broke; stopping$/m);
  });
});
