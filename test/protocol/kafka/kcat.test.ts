// kcat (librdkafka 2.0.2 in Debian 12), unchanged, against the Kafka listener: `-L` metadata,
// `-P -K:` keyed produce, `-C -o beginning -e` consume with the offsets, and `-G` a balanced
// consumer group (classic protocol); with authentication on, SASL_PLAINTEXT with
// SCRAM-SHA-256 and the ACLs. Skipped, with a message, where kcat is not installed
// (`bash scripts/tools.sh install`).

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { describe, test } from "node:test";
import { PASSWORD, startSecureServer } from "../security/secure_server.ts";
import { startKafkaServer } from "./kafka_serving.ts";

const kcatMissing = spawnSync("kcat", ["-V"]).error !== undefined;
const SKIP = kcatMissing ? "kcat is not installed: bash scripts/tools.sh install" : false;

/** Runs kcat without blocking the event loop (the broker runs in this process). */
function kcat(
  args: string[],
  input = "",
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn("kcat", args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    // tidy: allow-timeout a bound on a child process that hangs, not a wait for time
    const deadline = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.on("close", (code) => {
      clearTimeout(deadline);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

describe("kcat against the Kafka listener", { skip: SKIP }, () => {
  test("-L, -P -K:, -C from the beginning, and -G as a group", async () => {
    await using broker = await startKafkaServer();
    const b = ["-b", broker.broker];
    await broker.server.engine.createTopic("kc", { partitions: 2 });

    const metadata = await kcat([...b, "-L"]);
    assert.equal(metadata.code, 0, metadata.stderr);
    assert.match(metadata.stdout, new RegExp(`broker 0 at 127\\.0\\.0\\.1:${broker.port}`));
    assert.match(metadata.stdout, /topic "kc" with 2 partitions/);

    const lines = Array.from({ length: 50 }, (_, i) => `key${i}:value${i}`);
    const produced = await kcat([...b, "-P", "-t", "kc", "-K:"], `${lines.join("\n")}\n`);
    assert.equal(produced.code, 0, produced.stderr);
    let stored = 0;
    for (let p = 0; p < 2; p++) stored += broker.server.engine.partition("kc", p).highWatermark;
    assert.equal(stored, 50);

    const consumed = await kcat([
      ...b,
      "-C",
      "-t",
      "kc",
      "-o",
      "beginning",
      "-e",
      "-c",
      "50",
      "-f",
      "%k %s %o\\n",
    ]);
    assert.equal(consumed.code, 0, consumed.stderr);
    const got = consumed.stdout.trim().split("\n");
    assert.equal(got.length, 50);
    const pairs = new Set(got.map((line) => line.split(" ").slice(0, 2).join(":")));
    assert.deepEqual([...pairs].sort(), [...lines].sort());

    const grouped = await kcat([...b, "-G", "kcat-group", "-o", "beginning", "-c", "50", "kc"]);
    assert.equal(grouped.code, 0, grouped.stderr);
    assert.equal(grouped.stdout.trim().split("\n").length, 50);
    assert.match(grouped.stderr, /rebalanced/);
  });

  test("librdkafka negotiates message format v2 and keeps compression on", async () => {
    await using broker = await startKafkaServer();
    await broker.server.engine.createTopic("z", { partitions: 1 });
    for (const codec of ["gzip", "snappy", "lz4", "zstd"]) {
      const produced = await kcat(
        ["-b", broker.broker, "-P", "-t", "z", "-z", codec, "-X", "debug=protocol"],
        "a\nb\n",
      );
      assert.equal(produced.code, 0, produced.stderr);
      assert.doesNotMatch(produced.stderr, /compression.*disabled|MsgVer2.*disabled/i);
      assert.match(produced.stderr, /ProduceRequest \(v7/);
    }
    const read = await kcat(["-b", broker.broker, "-C", "-t", "z", "-o", "beginning", "-e"]);
    assert.equal(read.code, 0, read.stderr);
    assert.deepEqual(read.stdout.trim().split("\n"), ["a", "b", "a", "b", "a", "b", "a", "b"]);
  });

  test("SASL_PLAINTEXT with SCRAM-SHA-256: produce and consume as allowed, no more", async () => {
    const allow = (resourceType: "topic" | "group", name: string, operations: string[]) => ({
      principal: "writer",
      resourceType,
      name,
      pattern: "literal" as const,
      operations: operations as ("read" | "write" | "describe")[],
      permission: "allow" as const,
    });
    await using served = await startSecureServer(["writer"], {
      kafka: { port: 0, autoCreateTopics: false },
      acls: [allow("topic", "kc", ["read", "write"]), allow("group", "kcat-sasl", ["read"])],
    });
    await served.server.engine.createTopic("kc", { partitions: 1 });
    await served.server.engine.createTopic("hidden", { partitions: 1 });
    const sasl = (password: string) => [
      "-b",
      `127.0.0.1:${served.server.kafka!.port}`,
      "-X",
      "security.protocol=SASL_PLAINTEXT",
      "-X",
      "sasl.mechanisms=SCRAM-SHA-256",
      "-X",
      "sasl.username=writer",
      "-X",
      `sasl.password=${password}`,
    ];
    const metadata = await kcat([...sasl(PASSWORD), "-L"]);
    assert.equal(metadata.code, 0, metadata.stderr + served.logs.join("\n"));
    assert.match(metadata.stdout, /topic "kc" with 1 partitions/);
    assert.doesNotMatch(metadata.stdout, /hidden/, "a topic it may not describe is left out");

    const produced = await kcat([...sasl(PASSWORD), "-P", "-t", "kc"], "one\ntwo\n");
    assert.equal(produced.code, 0, produced.stderr);
    assert.equal(served.server.engine.partition("kc", 0).highWatermark, 2);
    const denied = await kcat([...sasl(PASSWORD), "-P", "-t", "hidden"], "no\n");
    assert.notEqual(denied.code, 0, "producing to a topic without write fails");
    assert.equal(served.server.engine.partition("hidden", 0).highWatermark, 0);

    const consumed = await kcat([
      ...sasl(PASSWORD),
      "-G",
      "kcat-sasl",
      "-o",
      "beginning",
      "-c",
      "2",
      "kc",
    ]);
    assert.equal(consumed.code, 0, consumed.stderr);
    assert.deepEqual(consumed.stdout.trim().split("\n"), ["one", "two"]);

    const wrong = await kcat([...sasl("wrong"), "-L", "-m", "3"]);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /Authentication failed|SASL/i);
    assert.ok(served.logs.some((l) => /failed login from/.test(l)));
  });
});
