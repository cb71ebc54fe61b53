// `sluice exchanges declare|bind|unbind|list|delete` and `sluice produce --exchange|--queue`
// end to end: a `sluice serve` process on a temp directory, each command run as a child
// process against it, its output and exit code checked (0 done, 1 refused by the broker,
// 2 called the wrong way).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { readTopic } from "../protocol/queue/queue_helpers.ts";
import { lines, useServer } from "./cli_run.ts";

describe("sluice exchanges and produce --exchange", () => {
  const server = useServer();
  const { run, ok } = server;
  const readAll = async (topic: string, count: number) => {
    const args = ["consume", "--topic", topic, "--from", "beginning", "--count", String(count)];
    const { stdout } = await ok([...args, "--timeout-ms", "5000"]);
    return lines(stdout);
  };

  test("declare, bind, produce through a topic exchange, list, unbind, delete", async () => {
    await ok(["topics", "create", "eu-orders"]);
    await ok(["queues", "declare", "eu", "--topic", "eu-orders", "--from", "beginning"]);
    await ok(["topics", "create", "unrouted"]);
    const declared = await ok([
      "exchanges",
      "declare",
      "orders",
      "--type",
      "topic",
      "--alternate-topic",
      "unrouted",
    ]);
    assert.match(declared.stdout, /declared exchange orders \(topic\)/);
    const bound = await ok([
      "exchanges",
      "bind",
      "orders",
      "--queue",
      "eu",
      "--routing-key",
      "*.eu",
    ]);
    assert.match(bound.stdout, /bound queue eu to exchange orders/);
    const produced = await ok(
      ["produce", "--exchange", "orders", "--key-separator", ":"],
      "paid.eu:one\npaid.us:two\nnew.eu:three\n",
    );
    assert.match(produced.stderr, /3 records to exchange orders/);
    assert.deepEqual(await readAll("eu-orders", 2), ["one", "three"]);
    assert.deepEqual(await readAll("unrouted", 1), ["two"]);
    const { stdout } = await ok(["exchanges", "list", "--json"]);
    const [listed] = lines(stdout).map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.equal(listed!["name"], "orders");
    assert.equal(listed!["alternateTopic"], "unrouted");
    assert.deepEqual(
      (listed!["bindings"] as { queue: string; routingKey: string }[]).map((b) => [
        b.queue,
        b.routingKey,
      ]),
      [["eu", "*.eu"]],
    );
    const table = await ok(["exchanges", "list"]);
    assert.match(table.stdout, /orders\s+topic\s+unrouted\s+queue:eu '\*\.eu'/);
    await ok(["exchanges", "unbind", "orders", "--queue", "eu", "--routing-key", "*.eu"]);
    await ok(["exchanges", "delete", "orders"]);
    assert.deepEqual(lines((await ok(["exchanges", "list", "--json"])).stdout), []);
  });

  test("produce --queue publishes by the default exchange, with repeated headers", async () => {
    await ok(["topics", "create", "jobs"]);
    await ok(["queues", "declare", "work", "--topic", "jobs", "--from", "beginning"]);
    const produced = await ok(
      ["produce", "--queue", "work", "--header", "a=1", "--header", "a=2"],
      "job-1\n",
    );
    assert.match(produced.stderr, /1 record to queue work/);
    const [record] = await readTopic(server.port(), "jobs", 1);
    const pairs = record!.headers.map((h) => [h.key, new TextDecoder().decode(h.value!)]);
    assert.deepEqual(pairs, [
      ["a", "1"],
      ["a", "2"],
      ["sluice-routing-key", "work"],
    ]);
    const consumed = await ok([
      "consume",
      "--queue",
      "work",
      "--count",
      "1",
      "--timeout-ms",
      "5000",
    ]);
    assert.deepEqual(lines(consumed.stdout), ["job-1"]);
  });

  test("headers bindings from --match and --header", async () => {
    await ok(["topics", "create", "pdf"]);
    await ok(["exchanges", "declare", "docs", "--type", "headers"]);
    const args = ["--topic", "pdf", "--match", "any", "--header", "format=pdf"];
    await ok(["exchanges", "bind", "docs", ...args, "--header", "kind=report"]);
    await ok(["produce", "--exchange", "docs", "--header", "format=pdf"], "doc\n");
    await ok(["produce", "--exchange", "docs", "--header", "format=zip"], "zip\n");
    assert.deepEqual(await readAll("pdf", 1), ["doc"]);
  });

  test("bad input: usage errors exit 2, broker refusals exit 1 naming the value", async () => {
    const badType = await run(["exchanges", "declare", "x", "--type", "bogus"]);
    assert.equal(badType.status, 2);
    await ok(["exchanges", "declare", "t", "--type", "topic"]);
    await ok(["topics", "create", "tt"]);
    const pattern = await run(["exchanges", "bind", "t", "--topic", "tt", "--routing-key", "a..b"]);
    assert.equal(pattern.status, 1);
    assert.match(pattern.stderr, /INVALID_EXCHANGE.*a\.\.b/);
    const ghost = await run(["exchanges", "bind", "t", "--queue", "ghost", "--routing-key", "a"]);
    assert.equal(ghost.status, 1);
    assert.match(ghost.stderr, /UNKNOWN_QUEUE.*ghost/);
    const both = await run(["exchanges", "bind", "t", "--queue", "q", "--topic", "tt"]);
    assert.equal(both.status, 2);
    const missing = await run(["produce", "--exchange", "nope"], "x\n");
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /UNKNOWN_EXCHANGE/);
    const mixed = await run(["produce", "--topic", "tt", "--exchange", "t"], "x\n");
    assert.equal(mixed.status, 2);
  });
});
