// The operations listener of `sluice serve --http-port`: /healthz, /readyz, /metrics (parsed
// by parse-prometheus-text-format, an independent parser of the Prometheus text format), the
// JSON overview and the page; the startup lines' order; listen failures that name the port.

import assert from "node:assert/strict";
import fs from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { describe, test } from "node:test";
import parsePrometheusTextFormat, { type PrometheusFamily } from "parse-prometheus-text-format";
import { Admin, Consumer, Producer } from "../../protocol/client/mod.ts";
import { API } from "../../protocol/codec/frames.ts";
import { writeQueueAckRequest } from "../../protocol/codec/queue_ack.ts";
import { writeQueueFetchRequest } from "../../protocol/codec/queue_fetch.ts";
import { API_KEYS as K } from "../../protocol/kafka/mod.ts";
import { PROJECT_ROOT, runtimeArgv, tempDir, waitFor } from "../helpers.ts";
import { RawKafka } from "../protocol/kafka/kafka_serving.ts";
import { connected } from "../protocol/server/serving.ts";
import { run, type Started, start } from "../processes.ts";

const CLI = join(PROJECT_ROOT, "bin", "sluice.ts");

async function serve(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Started> {
  const [command, argv] = runtimeArgv(CLI, ["serve", "--port", "0", ...args]);
  return start(command, argv, /sluice listening on ([\d.]+):(\d+)/, {
    env: { ...process.env, ...env },
  });
}

function httpPort(server: Started): number {
  const match = /http listening on [\d.]+:(\d+)/.exec(server.output());
  assert.ok(match !== null, server.output());
  return Number(match[1]);
}

function family(families: PrometheusFamily[], name: string): PrometheusFamily {
  const found = families.find((f) => f.name === name);
  assert.ok(found !== undefined, `metric family ${name}`);
  return found;
}

async function produce(port: number, topic: string, count: number): Promise<void> {
  const admin = new Admin({ host: "127.0.0.1", port });
  await admin.createTopics([{ name: topic, partitions: 2 }]);
  await admin.close();
  const producer = new Producer({ host: "127.0.0.1", port, acks: "all" });
  for (let i = 0; i < count; i++) {
    await producer.send({ topic, partition: i % 2, value: new TextEncoder().encode(`v${i}`) });
  }
  await producer.close();
}

describe("operations HTTP listener", () => {
  test("health, readiness, metrics, overview and the page", async () => {
    using dir = tempDir();
    await using server = await serve(["--data", dir.path, "--http-port", "0"]);
    const stdout = server.output().split("\n");
    const httpLine = stdout.findIndex((line) => line.startsWith("http listening on"));
    const sluiceLine = stdout.findIndex((line) => line.startsWith("sluice listening on"));
    assert.ok(httpLine >= 0 && httpLine < sluiceLine, "http's line comes before sluice's");
    const base = `http://127.0.0.1:${httpPort(server)}`;
    assert.equal(await (await fetch(`${base}/healthz`)).text(), "ok\n");
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
    assert.equal((await fetch(`${base}/nothing`)).status, 404);
    assert.equal((await fetch(`${base}/metrics`, { method: "POST" })).status, 405);
    await produce(Number(server.ready[2]), "orders", 10);
    await waitFor(
      () => /info {2}topic created topic=orders partitions=2/.test(server.output()),
      "the topic created log line",
    );
    const response = await fetch(`${base}/metrics`);
    assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    const families = parsePrometheusTextFormat(text);
    const appended = family(families, "sluice_records_appended_total");
    assert.equal(appended.type, "COUNTER");
    assert.deepEqual(appended.metrics, [{ labels: { topic: "orders" }, value: "10" }]);
    const ends = family(families, "sluice_log_end_offset").metrics;
    assert.deepEqual(
      ends.map((m) => [m.labels?.["partition"], m.value]),
      [
        ["0", "5"],
        ["1", "5"],
      ],
    );
    assert.ok(Number(family(families, "sluice_bytes_in_total").metrics[0]!.value) > 0);
    // Every answer went out in some write; answers ready in one turn share one.
    const writes = Number(family(families, "sluice_socket_writes_total").metrics[0]!.value);
    assert.ok(writes > 0, `${writes} socket writes`);
    const produceRequests = family(families, "sluice_requests_total").metrics.find(
      (m) => m.labels?.["api"] === "Produce",
    );
    assert.ok(produceRequests !== undefined && Number(produceRequests.value) >= 10);
    // acks=all on the default fsync interval: every send waited for an fdatasync.
    const fsync = family(families, "sluice_fsync_seconds");
    assert.equal(fsync.type, "HISTOGRAM");
    const fsyncs = fsync.metrics[0]!;
    assert.ok(Number(fsyncs.count) >= 1, `fsync count ${fsyncs.count}`);
    assert.equal(fsyncs.buckets?.["+Inf"], fsyncs.count);
    assert.ok(Number(fsyncs.sum) > 0);
    // Queue state-log commits have their own histogram (no queue here: empty, but exported).
    const queueFsync = family(families, "sluice_queue_fsync_seconds");
    assert.equal(queueFsync.type, "HISTOGRAM");
    assert.equal(queueFsync.metrics[0]!.buckets?.["+Inf"], "0");
    assert.equal(family(families, "sluice_request_seconds").type, "HISTOGRAM");
    // The parser folds a histogram's label sets into one sample (it keys buckets by `le`
    // only), so the per-API series are read from the text itself.
    const sample = (series: string) => {
      const line = text.split("\n").find((l) => l.startsWith(`${series} `));
      assert.ok(line !== undefined, `series ${series}`);
      return Number(line.slice(series.length + 1));
    };
    const produceCount = sample('sluice_request_seconds_count{api="Produce"}');
    assert.ok(produceCount >= 10, `a latency per Produce request: ${produceCount}`);
    assert.equal(sample('sluice_request_seconds_bucket{api="Produce",le="+Inf"}'), produceCount);
    assert.ok(sample('sluice_request_seconds_sum{api="Produce"}') > 0);
    const overview = (await (await fetch(`${base}/api/overview`)).json()) as {
      topics: { name: string }[];
      groups: {
        group: string;
        state: string | null;
        memberCount: number | null;
        members: string[] | null;
        lag: number;
      }[];
    };
    assert.equal(overview.topics[0]?.name, "orders");
    // A group with a commit and one member, read from the coordinator in process.
    const consumer = new Consumer({
      host: "127.0.0.1",
      port: Number(server.ready[2]),
      group: "g1",
    });
    try {
      consumer.subscribe(["orders"], { fromBeginning: true });
      let polled = 0;
      await waitFor(
        async () => {
          polled += (await consumer.poll({ maxWaitMs: 100 })).length;
          return polled >= 4;
        },
        "records for the group",
        20_000,
      );
      await consumer.commit();
      const withGroup = (await (await fetch(`${base}/api/overview`)).json()) as typeof overview;
      const group = withGroup.groups.find((g) => g.group === "g1");
      assert.deepEqual(group?.members, [consumer.memberId]);
      assert.equal(group?.memberCount, 1);
      assert.ok(group?.state === "stable" || group?.state === "reconciling", group?.state ?? "");
      assert.equal(group?.lag, 10 - polled);
    } finally {
      await consumer.close();
    }
    const page = await (await fetch(`${base}/`)).text();
    assert.match(page, /<title>sluice<\/title>/);
    await waitFor(
      () =>
        /info {2}group member joined group=g1 member=\S+ generation=1 members=1/.test(
          server.output(),
        ),
      "the member joined log line",
    );
    await waitFor(
      () =>
        /info {2}group member left group=g1 member=\S+ generation=2 members=0/.test(
          server.output(),
        ),
      "the member left log line",
    );
  });

  test("errors by code: answers with an error are counted under their code's name", async () => {
    using dir = tempDir();
    await using server = await serve(["--data", dir.path, "--http-port", "0"]);
    const admin = new Admin({ host: "127.0.0.1", port: Number(server.ready[2]) });
    try {
      const bad = admin.createTopics([{ name: "bad", config: { segmentBytes: 1 } }]);
      await assert.rejects(bad, { code: "INVALID_CONFIG" });
      await assert.rejects(admin.alterTopicConfigs("absent", { retentionMs: 1 }), {
        code: "UNKNOWN_TOPIC",
      });
      await assert.rejects(admin.alterTopicConfigs("absent", { fsync: "never" }), {
        code: "UNKNOWN_TOPIC",
      });
      await assert.rejects(admin.deleteQueue("absent"), { code: "UNKNOWN_QUEUE" });
      await assert.rejects(admin.deleteExchange("absent"), { code: "UNKNOWN_EXCHANGE" });
    } finally {
      await admin.close();
    }
    // QueueAck and QueueFetch carry their codes in binary bodies: counted too.
    using raw = await connected(Number(server.ready[2]));
    const ack = raw.request(API.QueueAck, (w) =>
      writeQueueAckRequest(w, { queue: "absent", memberId: "m", partitions: [] }),
    );
    assert.equal((await raw.response(ack)).errorCode, 0, "the error is in the body");
    const queueFetch = raw.request(API.QueueFetch, (w) =>
      writeQueueFetchRequest(w, {
        maxWaitMs: 0,
        maxRecords: 1,
        maxBytes: 65_536,
        queue: "absent",
        memberId: "m",
        acks: [],
      }),
    );
    assert.equal((await raw.response(queueFetch)).errorCode, 0, "the error is in the body");
    const text = await (await fetch(`http://127.0.0.1:${httpPort(server)}/metrics`)).text();
    const errors = family(parsePrometheusTextFormat(text), "sluice_errors_total");
    assert.equal(errors.type, "COUNTER");
    const byCode = Object.fromEntries(errors.metrics.map((m) => [m.labels?.["code"], m]));
    assert.equal(byCode["INVALID_CONFIG"]?.value, "1");
    assert.equal(byCode["INVALID_CONFIG"]?.labels?.["wire_code"], "14");
    assert.equal(byCode["UNKNOWN_TOPIC"]?.value, "2");
    assert.equal(byCode["UNKNOWN_QUEUE"]?.value, "3");
    assert.equal(byCode["UNKNOWN_EXCHANGE"]?.value, "1");
    // Series that existed before stay.
    assert.ok(text.includes('sluice_requests_total{api="AlterTopicConfigs"} 2'));
  });

  test("requests over the Kafka listener have their own latency histogram", async () => {
    using dir = tempDir();
    await using server = await serve(["--data", dir.path, "--http-port", "0", "--kafka-port", "0"]);
    const kafkaPort = /kafka listening on [\d.]+:(\d+)/.exec(server.output())?.[1];
    assert.ok(kafkaPort !== undefined, server.output());
    const kafka = await RawKafka.connect(Number(kafkaPort));
    try {
      assert.equal((await kafka.call(K.ApiVersions, 2, {}))["errorCode"], 0);
    } finally {
      kafka.close();
    }
    const text = await (await fetch(`http://127.0.0.1:${httpPort(server)}/metrics`)).text();
    assert.equal(
      family(parsePrometheusTextFormat(text), "sluice_kafka_request_seconds").type,
      "HISTOGRAM",
    );
    assert.match(text, /^sluice_kafka_request_seconds_count\{api="ApiVersions"\} 1$/m);
    assert.match(text, /^sluice_kafka_request_seconds_bucket\{api="ApiVersions",le="\+Inf"\} 1$/m);
  });

  test("above metricsPartitionsMax only per-topic series are exported", async () => {
    using dir = tempDir();
    const config = join(dir.path, "sluice.json");
    fs.writeFileSync(config, JSON.stringify({ http: { metricsPartitionsMax: 1 } }));
    await using server = await serve(["--data", join(dir.path, "d"), "--http-port", "0"], {
      SLUICE_CONFIG: config,
    });
    await produce(Number(server.ready[2]), "wide", 2);
    const text = await (await fetch(`http://127.0.0.1:${httpPort(server)}/metrics`)).text();
    const families = parsePrometheusTextFormat(text);
    assert.equal(
      families.find((f) => f.name === "sluice_log_end_offset"),
      undefined,
    );
    assert.deepEqual(family(families, "sluice_topic_partitions").metrics, [
      { labels: { topic: "wide" }, value: "2" },
    ]);
  });

  test("a port in use: exit 1, and the message names host, port and reason", async () => {
    using dir = tempDir();
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
    const { port } = holder.address() as { port: number };
    try {
      const [command, argv] = runtimeArgv(CLI, ["serve", "--data", dir.path, "--port", "0"]);
      const http = await run(command, [...argv, "--http-port", String(port)]);
      assert.equal(http.status, 1, http.stderr);
      assert.match(
        http.stderr,
        new RegExp(`cannot listen for HTTP on 127\\.0\\.0\\.1:${port}: the port is in use`),
      );
      const native = await run(command, [...argv.slice(0, -1), String(port)]);
      assert.equal(native.status, 1, native.stderr);
      assert.match(native.stderr, new RegExp(`127\\.0\\.0\\.1:${port}: the port is in use`));
      assert.doesNotMatch(native.stderr, /\n\s+at /, "no stack trace");
    } finally {
      await new Promise<void>((resolve) => holder.close(() => resolve()));
    }
  });
});
