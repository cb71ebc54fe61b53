// The client commands' kcat habits, end to end against a `sluice serve` process: consume
// --format / --json / --from -N|@MS|ISO / -e, produce --header / --value-file / --key, byte
// exact round trips of values that are not UTF-8, the past-the-end warning, the notices while
// the broker is away, and flag mistakes named whole.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { describe, test } from "node:test";
import { PROJECT_ROOT, runtimeArgv, tempDir, waitFor } from "../helpers.ts";
import { ok, type Result, sluice, spawnSluice, useServer } from "./cli_run.ts";

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("sluice consume and produce, kcat style", () => {
  const server = useServer({ dataSubdir: "data" });
  const { broker } = server;

  test("bytes in with --value-file come out the same with --json, headers all kept", async () => {
    await ok(["topics", "create", "bin", ...broker()]);
    const bytes = Uint8Array.from({ length: 3000 }, (_, i) => (i * 131 + 7) % 256);
    const file = join(server.dir(), "value.bin");
    fs.writeFileSync(file, bytes);
    const headers = ["--header", "h=1", "--header", "h=2", "--header", "x=a=b"];
    const sent = await ok([
      "produce",
      "--topic",
      "bin",
      "--value-file",
      file,
      "--key",
      "k",
      ...headers,
      ...broker(),
    ]);
    assert.match(sent.stderr, /1 record to bin/);
    const read = await ok([
      "consume",
      "--topic",
      "bin",
      "--from",
      "beginning",
      "-e",
      "--json",
      ...broker(),
    ]);
    const lines = read.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 1);
    const record = JSON.parse(lines[0]!);
    assert.equal(record.valueEncoding, "base64");
    assert.deepEqual(new Uint8Array(Buffer.from(record.value, "base64")), bytes);
    assert.equal(record.key, "k");
    assert.equal(record.keyEncoding, undefined);
    assert.deepEqual(record.headers, [
      { key: "h", value: "1" },
      { key: "h", value: "2" },
      { key: "x", value: "a=b" },
    ]);
    assert.deepEqual(Object.keys(record).slice(0, 4), [
      "topic",
      "partition",
      "offset",
      "timestamp",
    ]);
  });

  test("--format tokens, default output of non-UTF-8 values escaped with a notice", async () => {
    await ok(["topics", "create", "fmt", ...broker()]);
    await ok(
      ["produce", "--topic", "fmt", "--key-separator", ":", "--header", "a=1", ...broker()],
      "k1:hello\n",
    );
    const file = join(server.dir(), "odd.bin");
    fs.writeFileSync(file, Uint8Array.from([0x61, 0xff, 0x00, 0x5c, 0x62]));
    await ok(["produce", "--topic", "fmt", "--value-file", file, ...broker()]);
    const format = "%t|%p|%o|%k|%K|%s|%S|%h\\n";
    const read = await ok([
      "consume",
      "--topic",
      "fmt",
      "--from",
      "beginning",
      "-e",
      "-f",
      format,
      ...broker(),
    ]);
    const [first, second] = read.stdout.split("\n");
    assert.equal(first, "fmt|0|0|k1|2|hello|5|a=1");
    assert.equal(second, "fmt|0|1||-1|a\\xff\\x00\\\\b|5|");
    assert.match(read.stderr, /fmt\/0 offset 1 is not valid UTF-8/);
    const plain = await ok(["consume", "--topic", "fmt", "--from", "beginning", "-e", ...broker()]);
    assert.equal(plain.stdout, "hello\na\\xff\\x00\\\\b\n");
    const timestamp = await ok([
      "consume",
      "--topic",
      "fmt",
      "--from",
      "beginning",
      "-e",
      "-f",
      "%T",
      ...broker(),
    ]);
    assert.match(timestamp.stdout, /^\d{13}\d{13}$/);
  });

  test("--from -N, --from=-N, @MS, ISO-8601 and a warning past the end", async () => {
    await ok(["topics", "create", "from", "--partitions", "2", ...broker()]);
    await ok(["produce", "--topic", "from", "--partition", "0", ...broker()], "a\nb\nc\nd\n");
    const cutMs = Date.now() + 1;
    await waitFor(() => Date.now() > cutMs, "the clock to pass the cut");
    await ok(["produce", "--topic", "from", "--partition", "1", ...broker()], "e\nf\n");
    const read = async (...args: string[]) =>
      (await ok(["consume", "--topic", "from", "-e", "-f", "%s", ...args, ...broker()])).stdout;
    const sorted = (text: string) => [...text].sort().join("");
    assert.equal(sorted(await read("--from", "-1")), "df");
    assert.equal(sorted(await read("--from=-3")), "bcdef");
    assert.equal(await read("--from", `@${cutMs}`), "ef");
    assert.equal(await read("--from", new Date(cutMs - 1).toISOString(), "--partition", "1"), "ef");
    assert.equal(await read("--from", "2000-01-01", "--partition", "0"), "abcd");
    const past = await ok([
      "consume",
      "--topic",
      "from",
      "--from",
      "99",
      "--timeout-ms",
      "300",
      ...broker(),
    ]);
    assert.match(past.stderr, /--from 99 is past the end of from\/0 \(log end 4\)/);
    assert.match(past.stderr, /--from 99 is past the end of from\/1 \(log end 2\)/);
  });

  test("mistakes exit 2 with the flag named whole", async () => {
    const cases: [string[], RegExp][] = [
      [
        ["consume", "--topic", "x", "--form", "end"],
        /unknown flag '--form' \(did you mean --from\?\)/,
      ],
      [["consume", "--topic", "x", "--format", "%q"], /--format "%q": unknown token '%q'/],
      [["consume", "--topic", "x", "--format", "%s", "--json"], /--format and --json/],
      [
        ["consume", "--topic", "x", "--from", "soon"],
        /--from soon is not beginning, end, OFFSET, -N/,
      ],
      [
        ["consume", "--topic", "x", "--group", "g", "--from", "-3"],
        /--from -3 cannot be used with --group/,
      ],
      [["produce", "--topic", "x", "--header", "novalue"], /--header novalue is not KEY=VALUE/],
      [["produce", "--topic", "x", "--key", "k"], /--key applies to --value-file/],
      [["consume", "--queue", "q", "--json"], /--json applies to --topic only/],
    ];
    for (const [args, message] of cases) {
      const result = await sluice([...args, ...broker()]);
      assert.equal(result.status, 2, `${args.join(" ")}: ${result.stderr}`);
      assert.match(result.stderr, message);
      assert.doesNotMatch(result.stderr, /\n\s+at /);
    }
  });

  test("a record may be as large as the topic's maxBatchBytes", async () => {
    const file = join(server.dir(), "big.bin");
    fs.writeFileSync(file, new Uint8Array(1536 * 1024).fill(7));
    await ok(["topics", "create", "small", ...broker()]);
    const refused = await sluice([
      "produce",
      "--topic",
      "small",
      "--value-file",
      file,
      ...broker(),
    ]);
    assert.equal(refused.status, 1, refused.stderr);
    assert.match(refused.stderr, /exceeds batchBytes 1048576/);
    const config = `maxBatchBytes=${4 * 1024 * 1024}`;
    await ok(["topics", "create", "large", "--config", config, ...broker()]);
    await ok(["produce", "--topic", "large", "--value-file", file, ...broker()]);
    const read = await ok([
      "consume",
      "--topic",
      "large",
      "--from",
      "beginning",
      "-e",
      "-f",
      "%S",
      ...broker(),
    ]);
    assert.equal(read.stdout, String(1536 * 1024));
  });
});

describe("sluice topics describe and offsets reset", () => {
  const server = useServer({ dataSubdir: "data" });
  const { broker } = server;

  test("topics describe lists config and each partition's start, end and records", async () => {
    const create = ["topics", "create", "d", "--partitions", "2", "--config", "retentionMs=90000"];
    await ok([...create, ...broker()]);
    await ok(["produce", "--topic", "d", "--partition", "1", ...broker()], "a\nb\nc\n");
    const { stdout } = await ok(["topics", "describe", "d", ...broker()]);
    assert.match(stdout, /^topic d: 2 partitions$/m);
    assert.match(stdout, /^retentionMs +90000$/m);
    assert.match(stdout, /^PARTITION +LOG-START +LOG-END +RECORDS$/m);
    assert.match(stdout, /^0 +0 +0 +0$/m);
    assert.match(stdout, /^1 +0 +3 +3$/m);
    const missing = await sluice(["topics", "describe", "nope", ...broker()]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /topic 'nope' does not exist/);
  });

  test("offsets reset moves a stopped group's offsets; a running group is refused", async () => {
    await ok(["topics", "create", "r", ...broker()]);
    await ok(["produce", "--topic", "r", ...broker()], "1\n2\n3\n4\n");
    const group = ["--group", "rg", "--from", "beginning"];
    await ok(["consume", "--topic", "r", ...group, "--count", "4", ...broker()]);
    const reset = await ok([
      "offsets",
      "reset",
      "rg",
      "--topic",
      "r",
      "--to",
      "earliest",
      ...broker(),
    ]);
    assert.match(reset.stdout, /^r +0 +0$/m);
    const again = await ok(["consume", "--topic", "r", ...group, "--count", "4", ...broker()]);
    assert.equal(again.stdout, "1\n2\n3\n4\n");
    const member = spawnSluice(["consume", "--topic", "r", "--group", "rg", ...broker()]);
    try {
      const busy = async () =>
        await sluice(["offsets", "reset", "rg", "--topic", "r", "--to", "latest", ...broker()]);
      let refused: Result | undefined;
      await waitFor(
        async () => {
          refused = await busy();
          return refused.status === 1;
        },
        "the member to join",
        20_000,
      );
      assert.match(refused!.stderr, /group 'rg' has 1 member: stop its consumers/);
    } finally {
      process.kill(member.child.pid!, "SIGTERM");
      await member.exited;
    }
  });
});

describe("a consumer while the broker is away", () => {
  test("waits for a broker that is down, says so, reconnects and goes on reading", async () => {
    using dir = tempDir();
    const data = join(dir.path, "data");
    const port = await freePort();
    const [command, argv] = runtimeArgv(join(PROJECT_ROOT, "bin/sluice.ts"), [
      "serve",
      "--data",
      data,
      "--port",
      String(port),
    ]);
    const startBroker = async (): Promise<ChildProcess> => {
      const child = spawn(command, argv, { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      child.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString();
      });
      await waitFor(() => out.includes("sluice listening on"), "the broker to listen", 20_000);
      return child;
    };
    const stop = async (child: ChildProcess) => {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      process.kill(child.pid!, "SIGTERM");
      await exited;
    };
    const to = ["--broker", `127.0.0.1:${port}`];
    let brokerProcess = await startBroker();
    await ok(["topics", "create", "live", ...to]);
    await stop(brokerProcess);
    // Started while the broker is down: it says so and waits.
    const consumer = spawnSluice(["consume", "--topic", "live", "--count", "2", ...to]);
    try {
      await waitFor(
        () =>
          /cannot connect to the broker at 127\.0\.0\.1:\d+ .*; retrying/.test(consumer.stderr()),
        "the waiting notice",
        20_000,
      );
      brokerProcess = await startBroker();
      await waitFor(
        () => /reached the broker/.test(consumer.stderr()),
        "the consumer to start",
        20_000,
      );
      await ok(["produce", "--topic", "live", ...to], "one\n");
      await waitFor(() => consumer.stdout() === "one\n", "the first record", 20_000);
      await stop(brokerProcess);
      await waitFor(
        () => /the broker at 127\.0\.0\.1:\d+ is unreachable/.test(consumer.stderr()),
        "the unreachable notice",
        20_000,
      );
      brokerProcess = await startBroker();
      await ok(["produce", "--topic", "live", ...to], "two\n");
      assert.equal(await consumer.exited, 0, consumer.stderr());
      assert.equal(consumer.stdout(), "one\ntwo\n");
      assert.match(consumer.stderr(), /reconnected to the broker at 127\.0\.0\.1:/);
    } finally {
      if (consumer.child.exitCode === null) consumer.child.kill("SIGKILL");
      await stop(brokerProcess);
    }
  });
});
