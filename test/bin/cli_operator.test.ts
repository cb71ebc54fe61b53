// The operator commands end to end against a `sluice serve` process: `groups list` (a header
// only when there are no groups, `--json`), `topics alter` (applied, shown by describe, bad
// values refused with the field named), their help texts, and every client command facing a
// broker that is away (nothing listening, or a listener that drops the connection): one line
// naming host:port and the reason, exit 1.

import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { describe, test } from "node:test";
import { ok, sluice, useServer } from "./cli_run.ts";

describe("sluice groups list and topics alter", () => {
  const server = useServer({ dataSubdir: "data" });
  const { broker } = server;

  test("groups list: a header only with no groups, then each group; --json", async () => {
    const empty = await ok(["groups", "list", ...broker()]);
    assert.equal(empty.stdout, "GROUP  STATE  PROTOCOL  MEMBERS  EPOCH\n");
    assert.equal((await ok(["groups", "list", "--json", ...broker()])).stdout, "");
    await ok(["topics", "create", "g-topic", ...broker()]);
    await ok(["produce", "--topic", "g-topic", ...broker()], "a\nb\n");
    const args = ["--topic", "g-topic", "--group", "readers", "--from", "beginning"];
    await ok(["consume", ...args, "--count", "2", ...broker()]);
    const listed = await ok(["groups", "list", ...broker()]);
    assert.deepEqual(listed.stdout.split("\n"), [
      "GROUP    STATE  PROTOCOL  MEMBERS  EPOCH",
      "readers  empty  consumer  0        0",
      "",
    ]);
    const json = await ok(["groups", "list", "--json", ...broker()]);
    assert.deepEqual(JSON.parse(json.stdout), {
      groupId: "readers",
      state: "empty",
      protocolType: "consumer",
      groupEpoch: 0,
      members: 0,
    });
    const misuse = await sluice(["groups", "describe", "readers", "--json", ...broker()]);
    assert.equal(misuse.status, 2);
    assert.match(misuse.stderr, /--json applies to 'groups list' only/);
  });

  test("topics alter: applied and shown by describe; -1 means no limit", async () => {
    await ok(["topics", "create", "a-topic", ...broker()]);
    const altered = await ok([
      "topics",
      "alter",
      "a-topic",
      "--retention-ms",
      "-1",
      "--retention-bytes",
      "1048576",
      "--fsync",
      "always",
      ...broker(),
    ]);
    assert.match(altered.stdout, /^altered topic a-topic: .*retentionMs=-1 /);
    assert.match(altered.stdout, /retentionBytes=1048576 .*fsync=always\n$/);
    const interval = await ok(["topics", "alter", "a-topic", "--fsync", "250", ...broker()]);
    assert.match(interval.stdout, /fsync=\{"intervalMs":250\}/);
    const described = await ok(["topics", "describe", "a-topic", ...broker()]);
    assert.match(described.stdout, /retentionBytes/);
    assert.match(described.stdout, /1048576/);
  });

  test("topics alter: bad values are refused with the flag or field named", async () => {
    await ok(["topics", "create", "b-topic", ...broker()]);
    const server = await sluice([
      "topics",
      "alter",
      "b-topic",
      "--segment-bytes",
      "10",
      ...broker(),
    ]);
    assert.equal(server.status, 1);
    assert.equal(
      server.stderr,
      "sluice topics: INVALID_CONFIG: Config segmentBytes = 10 is invalid: " +
        "must be in [1024, 2147483647]\n",
    );
    const usage: [string[], RegExp][] = [
      [["--fsync", "sometimes"], /--fsync sometimes is not always, never or an interval/],
      [["--retention-ms", "-5"], /--retention-ms -5 is not an integer ≥ -1/],
      [["--retention-bytes", "lots"], /--retention-bytes lots is not an integer/],
      [[], /alter needs at least one of --retention-ms, .*--fsync/],
    ];
    for (const [flags, message] of usage) {
      const result = await sluice(["topics", "alter", "b-topic", ...flags, ...broker()]);
      assert.equal(result.status, 2, `${flags.join(" ")}: ${result.stderr}`);
      assert.match(result.stderr, message);
    }
    const elsewhere = await sluice(["topics", "create", "c", "--retention-ms", "5", ...broker()]);
    assert.equal(elsewhere.status, 2);
    assert.match(elsewhere.stderr, /--retention-ms applies to 'topics alter' only/);
    const missing = await sluice(["topics", "alter", "absent", "--fsync", "never", ...broker()]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /UNKNOWN_TOPIC: Topic 'absent' does not exist/);
  });

  test("help lists every new flag", async () => {
    const topics = (await ok(["topics", "--help"])).stdout;
    for (const flag of [
      "retention-ms",
      "retention-bytes",
      "fsync",
      "segment-bytes",
      "segment-ms",
      "max-batch-bytes",
    ]) {
      assert.match(topics, new RegExp(`--${flag} <value> +alter: `));
    }
    assert.match(topics, /^Usage: sluice topics .*alter NAME/);
    const groups = (await ok(["groups", "--help"])).stdout;
    assert.match(groups, /^Usage: sluice groups list \[--json\] \| describe GROUP/);
    assert.match(groups, /--json +list: one JSON object per group/);
    assert.match((await ok(["serve", "--help"])).stdout, /--slow-fsync-ms <value> +Log a warning/);
  });
});

/** Every client command that talks to a broker once and exits. */
const CLIENT_COMMANDS: string[][] = [
  ["topics", "list"],
  ["topics", "create", "t"],
  ["topics", "describe", "t"],
  ["topics", "alter", "t", "--fsync", "never"],
  ["topics", "delete", "t"],
  ["groups", "list"],
  ["groups", "describe", "g"],
  ["offsets", "reset", "g", "--topic", "t", "--to", "earliest"],
  ["produce", "--topic", "t"],
  ["queues", "list"],
  ["exchanges", "list"],
];

describe("client commands with the broker away", () => {
  test("nothing listening: one line naming host:port and the reason, exit 1", async () => {
    for (const args of CLIENT_COMMANDS) {
      const result = await sluice([...args, "--broker", "127.0.0.1:1"], "x\n");
      assert.equal(result.status, 1, `${args.join(" ")}: ${result.stderr}`);
      assert.match(
        result.stderr,
        /^sluice \w+: cannot connect to the broker at 127\.0\.0\.1:1 \(.+\)\n$/,
        args.join(" "),
      );
    }
  });

  test("a listener that drops every connection: named with the reason, exit 1", async () => {
    const dropper: Server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => dropper.listen(0, "127.0.0.1", resolve));
    const { port } = dropper.address() as { port: number };
    try {
      for (const args of CLIENT_COMMANDS) {
        const result = await sluice([...args, "--broker", `127.0.0.1:${port}`], "x\n");
        assert.equal(result.status, 1, `${args.join(" ")}: ${result.stderr}`);
        assert.match(
          result.stderr,
          new RegExp(
            `^sluice \\w+: cannot connect to the broker at 127\\.0\\.0\\.1:${port} \\(.+\\)\\n$`,
          ),
          args.join(" "),
        );
        assert.doesNotMatch(result.stderr, /\n\s+at /, "no stack trace");
      }
    } finally {
      await new Promise<void>((resolve) => dropper.close(() => resolve()));
    }
  });
});
