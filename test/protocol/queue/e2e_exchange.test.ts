// Exchanges over a real server: Admin declares and binds, a Publisher publishes, and the
// records reach queues (QueueConsumer) and topics as the bindings say; the default exchange
// reaches a queue by name; definitions survive a server restart; bad input over the raw wire
// is a typed error naming the value, and the connection stays open.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  Admin,
  Publisher,
  QueueConsumer,
  type QueueMessage,
  ServerError,
} from "../../../protocol/client/mod.ts";
import { readMsgpack, writeMsgpack } from "../../../protocol/codec/control.ts";
import { WIRE_ERRORS } from "../../../protocol/codec/errors.ts";
import {
  readExchangePublishResponse,
  writeExchangePublishRequest,
} from "../../../protocol/codec/exchange.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { Reader } from "../../../protocol/codec/wire.ts";
import { SluiceServer } from "../../../protocol/server/mod.ts";
import { encodeRecordBatch } from "../../../record/mod.ts";
import { tempDir, waitFor } from "../../helpers.ts";
import { RawClient } from "../server/raw_client.ts";
import { declare, readTopic, textOf, utf8, withServer } from "./queue_helpers.ts";

async function take(consumer: QueueConsumer, count: number): Promise<QueueMessage[]> {
  const messages: QueueMessage[] = [];
  await waitFor(async () => {
    messages.push(...(await consumer.poll({ maxRecords: count - messages.length })));
    return messages.length >= count;
  }, `${count} messages from ${consumer.queue}`);
  return messages;
}

async function failsWith(action: () => Promise<unknown>, code: string): Promise<ServerError> {
  let caught: unknown;
  try {
    await action();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof ServerError, `expected ServerError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  return caught;
}

describe("exchanges over the wire", () => {
  test("a topic exchange routes to bound queues; each queue gets its copy", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "eu", { topic: "eu-orders" });
      await declare(admin, "audit", { topic: "audit-orders" });
      await admin.declareExchange("orders", { type: "topic" });
      assert.equal(await admin.bindExchange("orders", { queue: "eu", routingKey: "*.eu" }), true);
      assert.equal(await admin.bindExchange("orders", { queue: "audit", routingKey: "#" }), true);
      assert.equal(await admin.bindExchange("orders", { queue: "audit", routingKey: "#" }), false);
      await using publisher = new Publisher({ port });
      const result = await publisher.publish("orders", [
        { key: "paid.eu", value: "1" },
        { key: "paid.us", value: "2" },
        { key: "paid.eu", value: "3" },
      ]);
      // Three runs of one routing key each: three batches; eu takes two, audit all three.
      assert.deepEqual(result, { batches: 3, destinations: 5, unroutable: 0 });
      await using eu = new QueueConsumer({ port, queue: "eu", maxWaitMs: 50 });
      assert.deepEqual((await take(eu, 2)).map(textOf), ["1", "3"]);
      const audit = await readTopic(port, "audit-orders", 3);
      assert.deepEqual(audit.map(textOf), ["1", "2", "3"]);
      const [listed] = await admin.listExchanges();
      assert.equal(listed!.name, "orders");
      assert.deepEqual(
        listed!.bindings.map((b) => [b.queue, b.routingKey]),
        [
          ["eu", "*.eu"],
          ["audit", "#"],
        ],
      );
    });
  });

  test("the default exchange publishes to a queue by its name", async () => {
    await withServer(async ({ port, admin }) => {
      await declare(admin, "work", { topic: "jobs" });
      await using publisher = new Publisher({ port, acks: 1 });
      const result = await publisher.publish("", [
        { routingKey: "work", value: "job" },
        { routingKey: "no-such-queue", value: "lost" },
      ]);
      assert.deepEqual(result, { batches: 2, destinations: 1, unroutable: 1 });
      await using consumer = new QueueConsumer({ port, queue: "work", maxWaitMs: 50 });
      const [message] = await take(consumer, 1);
      assert.equal(textOf(message!), "job");
    });
  });

  test("headers exchange and alternate topic", async () => {
    await withServer(async ({ port, admin }) => {
      await admin.createTopics([{ name: "pdf" }, { name: "other" }]);
      await admin.declareExchange("docs", { type: "headers", alternateTopic: "other" });
      await admin.bindExchange("docs", { topic: "pdf", match: "any", headers: { format: "pdf" } });
      await using publisher = new Publisher({ port });
      await publisher.publish("docs", [
        { value: "a", headers: { format: "pdf" } },
        { value: "b", headers: { format: "zip" } },
      ]);
      assert.deepEqual((await readTopic(port, "pdf", 1)).map(textOf), ["a"]);
      assert.deepEqual((await readTopic(port, "other", 1)).map(textOf), ["b"]);
    });
  });

  test("bad input gets a typed error naming the value, and changes nothing", async () => {
    await withServer(async ({ port, admin }) => {
      await admin.createTopics([{ name: "t" }]);
      const type = await failsWith(
        () => admin.declareExchange("x", { type: "bogus" as "direct" }),
        "INVALID_EXCHANGE",
      );
      assert.match(type.message, /bogus/);
      await admin.declareExchange("x", { type: "topic" });
      const pattern = await failsWith(
        () => admin.bindExchange("x", { topic: "t", routingKey: "a..b" }),
        "INVALID_EXCHANGE",
      );
      assert.match(pattern.message, /a\.\.b/);
      const queue = await failsWith(
        () => admin.bindExchange("x", { queue: "ghost", routingKey: "a" }),
        "UNKNOWN_QUEUE",
      );
      assert.match(queue.message, /ghost/);
      await failsWith(() => admin.declareExchange("x", { type: "direct" }), "EXCHANGE_EXISTS");
      await using publisher = new Publisher({ port });
      await failsWith(() => publisher.publish("nope", [{ value: "1" }]), "UNKNOWN_EXCHANGE");
      const [listed] = await admin.listExchanges();
      assert.deepEqual(listed!.bindings, []);
    });
  });

  test("a full reject-publish queue: QUEUE_FULL for the batch it cut short", async () => {
    await withServer(async ({ port, admin }) => {
      await admin.declareQueue("capped", { maxLength: 3, overflow: "reject-publish" });
      const client = await RawClient.connect(port);
      try {
        await client.handshake();
        const batch = (values: string[]) =>
          encodeRecordBatch(
            values.map((v) => ({ key: utf8.encode("capped"), value: utf8.encode(v) })),
          );
        const first = batch(["a", "b"]);
        const second = batch(["c", "d", "e"]);
        const records = new Uint8Array(first.length + second.length);
        records.set(first);
        records.set(second, first.length);
        const request = client.request(API.ExchangePublish, (w) =>
          writeExchangePublishRequest(w, { acks: -1, timeoutMs: 1000, exchange: "", records }),
        );
        const answer = await client.response(request);
        assert.equal(answer.errorCode, 0);
        const { batches } = readExchangePublishResponse(answer.reader);
        assert.deepEqual(
          batches.map((b) => [b.errorCode, b.destinations]),
          [
            [0, 1],
            [WIRE_ERRORS.QUEUE_FULL, 1],
          ],
        );
        assert.equal(WIRE_ERRORS.QUEUE_FULL, 80);
        assert.match(
          batches[1]!.errorMessage ?? "",
          /Queue 'capped' is full: 2 of 3 records refused, 1 taken/,
        );
      } finally {
        client.close();
      }
      await using publisher = new Publisher({ port });
      const error = await failsWith(
        () => publisher.publish("", { routingKey: "capped", value: "f" }),
        "QUEUE_FULL",
      );
      assert.equal(error.retriable, true);
      const [queue] = await admin.listQueues(["capped"]);
      assert.deepEqual(
        [queue!.stats.ready, queue!.maxLength, queue!.overflow],
        [3, 3, "reject-publish"],
      );
    });
  });

  test("maxLengthBytes over the wire: declared, listed, bad values named", async () => {
    await withServer(async ({ port, admin }) => {
      const declared = await admin.declareQueue("small", {
        maxLengthBytes: 300,
        overflow: "reject-publish",
      });
      assert.equal(declared.maxLengthBytes, 300);
      await using publisher = new Publisher({ port });
      const records = Array.from({ length: 20 }, (_, i) => ({
        routingKey: "small",
        value: `record-${i}-${"x".repeat(30)}`,
      }));
      await failsWith(() => publisher.publish("", records), "QUEUE_FULL");
      const [queue] = await admin.listQueues(["small"]);
      assert.ok(queue!.stats.ready > 0 && queue!.stats.ready < 20, `${queue!.stats.ready}`);
      assert.ok(queue!.stats.readyBytes! > 0 && queue!.stats.readyBytes! <= 300);
      const negative = await failsWith(
        () => admin.declareQueue("bad", { maxLengthBytes: -1 }),
        "INVALID_QUEUE",
      );
      assert.match(negative.message, /maxLengthBytes -1 /);
      for (const bad of [2.5, 2 ** 53]) {
        const error = await failsWith(
          () => admin.declareQueue("bad", { maxLengthBytes: bad }),
          "INVALID_REQUEST",
        );
        assert.ok(error.message.includes(`maxLengthBytes = ${bad}`), error.message);
      }
      const names = (await admin.listQueues()).map((q) => q.name);
      assert.deepEqual(names, ["small"], "nothing half-created");
    });
  });

  test("a raw ExchangePublish with bad acks or a junk tail keeps the connection", async () => {
    await withServer(async ({ port, admin }) => {
      await admin.createTopics([{ name: "t" }]);
      await admin.declareExchange("x", { type: "fanout" });
      await admin.bindExchange("x", { topic: "t" });
      const client = await RawClient.connect(port);
      try {
        await client.handshake();
        const badAcks = client.request(API.ExchangePublish, (w) =>
          w.i8(0).u32(1000).string("x").u32(0),
        );
        const acks = await client.response(badAcks);
        assert.equal(acks.errorCode, WIRE_ERRORS.INVALID_REQUEST);
        const good = encodeRecordBatch([{ value: utf8.encode("ok") }]);
        const junk = new Uint8Array(good.length + 10);
        junk.set(good);
        const mixed = client.request(API.ExchangePublish, (w) =>
          writeExchangePublishRequest(w, {
            acks: 1,
            timeoutMs: 1000,
            exchange: "x",
            records: junk,
          }),
        );
        const answer = await client.response(mixed);
        assert.equal(answer.errorCode, 0);
        const { batches } = readExchangePublishResponse(answer.reader);
        assert.equal(batches.length, 2);
        assert.equal(batches[0]!.errorCode, 0);
        assert.equal(batches[0]!.destinations, 1);
        assert.equal(batches[1]!.errorCode, WIRE_ERRORS.INVALID_BATCH);
        const list = client.request(API.ExchangeList, (w) => writeMsgpack(w, {}));
        const listed = await client.response(list);
        assert.equal(listed.errorCode, 0);
        const body = readMsgpack(new Reader(listed.reader.raw(listed.reader.remaining)), "list");
        assert.equal((body["exchanges"] as unknown[]).length, 1);
        assert.equal(client.closed, false);
      } finally {
        client.close();
      }
      assert.deepEqual((await readTopic(port, "t", 1)).map(textOf), ["ok"]);
    });
  });
});

test("malformed exchange control bodies get a typed error; the connection stays open", async () => {
  await withServer(async ({ port, admin }) => {
    await admin.createTopics([{ name: "t" }]);
    await admin.declareExchange("h", { type: "headers" });
    const client = await RawClient.connect(port);
    try {
      await client.handshake();
      const manyHeaders = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"]));
      const cases: [number, object, number][] = [
        [API.ExchangeDeclare, { name: 7, type: "direct" }, WIRE_ERRORS.INVALID_REQUEST],
        [API.ExchangeDeclare, { name: "x", type: ["direct"] }, WIRE_ERRORS.INVALID_REQUEST],
        [API.ExchangeDelete, {}, WIRE_ERRORS.INVALID_REQUEST],
        [API.ExchangeBind, { exchange: "h", topic: "t", headers: manyHeaders }, 2],
        [API.ExchangeBind, { exchange: "h", topic: "t", headers: { a: 1 } }, 2],
        [API.ExchangeUnbind, { exchange: "h", topic: "t", match: 5 }, 2],
      ];
      for (const [apiKey, body, code] of cases) {
        const id = client.request(apiKey, (w) => writeMsgpack(w, body));
        const answer = await client.response(id);
        assert.equal(answer.errorCode, code, `${apiKey} ${JSON.stringify(body).slice(0, 80)}`);
      }
      // A bind that parses but names both a queue and a topic is refused by the engine.
      const both = client.request(API.ExchangeBind, (w) =>
        writeMsgpack(w, { exchange: "h", topic: "t", queue: "t" }),
      );
      const answer = await client.response(both);
      assert.equal(answer.errorCode, 0);
      const body = readMsgpack(new Reader(answer.reader.raw(answer.reader.remaining)), "bind");
      assert.equal(body["errorCode"], WIRE_ERRORS.INVALID_EXCHANGE);
      assert.equal(client.closed, false);
    } finally {
      client.close();
    }
    const [listed] = await admin.listExchanges();
    assert.deepEqual(listed!.bindings, []);
  });
});

test("exchanges and bindings survive a server restart", async () => {
  using dir = tempDir();
  for (const round of [1, 2]) {
    const server = await SluiceServer.start({ dataDir: dir.path, port: 0, log: () => {} });
    const admin = new Admin({ port: server.port });
    try {
      if (round === 1) {
        await declare(admin, "q", { topic: "qt" });
        await admin.declareExchange("d", { type: "direct" });
        await admin.bindExchange("d", { queue: "q", routingKey: "k" });
      }
      await using publisher = new Publisher({ port: server.port });
      const result = await publisher.publish("d", { key: "k", value: `round ${round}` });
      assert.deepEqual(result, { batches: 1, destinations: 1, unroutable: 0 });
    } finally {
      await admin.close();
      await server.close();
    }
  }
  const server = await SluiceServer.start({ dataDir: dir.path, port: 0, log: () => {} });
  try {
    const records = await readTopic(server.port, "qt", 2);
    assert.deepEqual(records.map(textOf), ["round 1", "round 2"]);
  } finally {
    await server.close();
  }
});
