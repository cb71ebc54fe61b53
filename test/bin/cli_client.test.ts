// The client commands of `sluice` end to end: a `sluice serve` process on a temp directory,
// and `sluice topics|produce|consume|groups` run as child processes against it, reading what
// they print and their exit codes.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { partitionForKey } from "../../protocol/client/partitioner.ts";
import { waitFor } from "../helpers.ts";
import { lines, sluice, spawnSluice, useServer } from "./cli_run.ts";

const _CLI = "bin/sluice.ts";
const utf8 = new TextEncoder();

/** Runs a command that must succeed; returns its stdout. */
async function ok(args: string[], input = ""): Promise<string> {
  const result = await sluice(args, input);
  assert.equal(result.status, 0, `sluice ${args.join(" ")}: ${result.stderr}`);
  return result.stdout;
}

/** Where each key of `lines` (KEY:VALUE) goes, by murmur2, among `partitions`. */
function partitionOf(line: string, partitions: number): number {
  return partitionForKey(utf8.encode(line.split(":")[0]!), partitions);
}

describe("sluice topics", () => {
  const server = useServer();

  test("creates, lists and deletes topics", async () => {
    const broker = server.broker();
    const empty = await sluice(["topics", "list", ...broker]);
    assert.deepEqual(empty, { status: 0, stdout: "", stderr: "sluice topics: no topics\n" });
    const [created] = await Promise.all([
      ok(["topics", "create", "orders", "--partitions", "3", ...broker]),
      ok(["topics", "create", "audit", "--config", "retentionMs=60000,fsync=always", ...broker]),
    ]);
    assert.equal(created, "created topic orders with 3 partitions\n");
    const [again, badConfig, listed] = await Promise.all([
      sluice(["topics", "create", "orders", ...broker]),
      sluice(["topics", "create", "x", "--config", "colour=7", ...broker]),
      ok(["topics", "list", ...broker]),
    ]);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /^sluice topics: TOPIC_EXISTS: .*orders.*\n$/);
    assert.equal(badConfig.status, 1);
    assert.match(badConfig.stderr, /^sluice topics: INVALID_CONFIG: .*colour/);
    assert.deepEqual(lines(listed), [
      "TOPIC   PARTITIONS  END OFFSETS (partition:offset)",
      "audit   1           0:0",
      "orders  3           0:0 1:0 2:0",
    ]);

    assert.equal(await ok(["topics", "delete", "audit", ...broker]), "deleted topic audit\n");
    const [afterDelete, missing] = await Promise.all([
      ok(["topics", "list", ...broker]),
      sluice(["topics", "delete", "audit", ...broker]),
    ]);
    assert.deepEqual(lines(afterDelete).slice(1), ["orders  3           0:0 1:0 2:0"]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /^sluice topics: UNKNOWN_TOPIC: .*audit/);
  });
});

describe("sluice produce, consume and groups", () => {
  const server = useServer();

  test("keyed lines go to their murmur2 partition and come back from the beginning", async () => {
    const broker = server.broker();
    await ok(["topics", "create", "events", "--partitions", "3", ...broker]);
    // Between them these keys fall on all three partitions.
    const keys = ["alice", "bob", "carol", "dave", "erin"];
    const input = Array.from({ length: 12 }, (_, i) => `${keys[i % 5]}:event ${i}`);
    const produced = await sluice(
      ["produce", "--topic", "events", "--key-separator", ":", ...broker],
      `${input.join("\n")}\n`,
    );
    assert.equal(produced.status, 0, produced.stderr);
    assert.equal(produced.stdout, "");
    assert.match(produced.stderr, /^sluice produce: 12 records to events \(acks all\) in \d+ ms/);

    // All of it, then each partition alone: each key's values in the order of the lines.
    const from = ["--from", "beginning"];
    const expected = [0, 1, 2].map((p) =>
      input.filter((line) => partitionOf(line, 3) === p).map((line) => line.split(":")[1]!),
    );
    const [all, listed, ...perPartition] = await Promise.all([
      ok(["consume", "--topic", "events", ...from, "--count", "12", ...broker]),
      ok(["topics", "list", ...broker]),
      ...expected.map((values, p) => {
        const only = ["--partition", String(p), "--count", String(values.length)];
        return ok(["consume", "--topic", "events", ...from, ...only, ...broker]);
      }),
    ]);
    assert.deepEqual(lines(all).sort(), expected.flat().sort());
    assert.ok(expected.every((values) => values.length > 0));
    assert.deepEqual(perPartition.map(lines), expected);
    const ends = expected.map((values, p) => `${p}:${values.length}`).join(" ");
    assert.equal(
      lines(listed).find((l) => l.startsWith("events")),
      `events  3           ${ends}`,
    );
  });

  test("produce with --partition and --acks, and lines without the key separator", async () => {
    const broker = server.broker();
    await ok(["topics", "create", "raw", "--partitions", "2", ...broker]);
    const toOne = ["--partition", "1", ...broker];
    const fire = await sluice(["produce", "--topic", "raw", "--acks", "0", ...toOne], "a\nb\n");
    assert.equal(fire.status, 0, fire.stderr);
    assert.match(fire.stderr, /^sluice produce: 2 records to raw \(acks 0\)/);
    const partial = await sluice(
      ["produce", "--topic", "raw", "--key-separator", "=", "--acks", "1", ...toOne],
      "k=c\nno separator\nk=d\n",
    );
    assert.equal(partial.status, 1);
    assert.match(partial.stderr, /^sluice produce: 2 records to raw \(acks 1\).*; offsets 1:2-3$/m);
    assert.match(partial.stderr, /^sluice produce: 1 line had no key separator '=' .*line 2\)$/m);
    const read = ["consume", "--topic", "raw", "--from", "1", "--count", "3", ...toOne];
    assert.deepEqual(lines(await ok(read)), ["b", "c", "d"]);
  });

  test("a grouped consume commits what it printed; groups describe shows it", async () => {
    const broker = server.broker();
    await ok(["topics", "create", "jobs", ...broker]);
    await ok(["produce", "--topic", "jobs", ...broker], "j0\nj1\nj2\nj3\nj4\n");
    const group = ["--group", "workers", ...broker];
    const from = ["--from", "beginning"];
    const first = await ok(["consume", "--topic", "jobs", ...group, ...from, "--count", "3"]);
    assert.deepEqual(lines(first), ["j0", "j1", "j2"]);
    assert.deepEqual(lines(await ok(["groups", "describe", "workers", ...broker])), [
      "group workers: epoch 0, 0 members",
      "TOPIC  PARTITION  COMMITTED  END  LAG  MEMBER",
      "jobs   0          3          5    2    -",
    ]);

    // A member that stays: it resumes after the commit, and describe shows it owning the
    // partition with its commit; SIGINT ends it cleanly, leaving the group.
    const member = spawnSluice(["consume", "--topic", "jobs", ...group]);
    member.child.stdin!.end();
    let described = "";
    try {
      await waitFor(() => lines(member.stdout()).length >= 2, "the member's records");
      assert.deepEqual(lines(member.stdout()), ["j3", "j4"]);
      await waitFor(async () => {
        described = await ok(["groups", "describe", "workers", ...broker]);
        return /1 member$/m.test(described) && /^jobs +0 +5 +5 +0 +\S+$/m.test(described);
      }, "the group to show its member and its commit");
    } finally {
      process.kill(member.child.pid!, "SIGINT");
    }
    assert.equal(await member.exited, 0, member.stderr());
    assert.equal(member.stderr(), "sluice consume: 2 records\n");
    const [header, , memberHeader, memberRow, , offsetHeader, offsetRow] = described.split("\n");
    assert.match(header!, /^group workers: epoch \d+, 1 member$/);
    assert.match(memberHeader!, /^MEMBER +EPOCH +TOPICS +PARTITIONS$/);
    const memberId = memberRow!.split(" ")[0]!;
    assert.match(memberRow!, /^\S+ +\d+ +jobs +jobs:0$/);
    assert.match(offsetHeader!, /^TOPIC +PARTITION +COMMITTED +END +LAG +MEMBER$/);
    assert.equal(offsetRow, `jobs   0          5          5    0    ${memberId}`);
    const afterLeave = lines(await ok(["groups", "describe", "workers", ...broker]));
    assert.equal(afterLeave[0], "group workers: epoch 0, 0 members");
  });

  test("consume stops quietly when its reader goes away", async () => {
    const broker = server.broker();
    await ok(["topics", "create", "piped", ...broker]);
    await ok(["produce", "--topic", "piped", ...broker], "first\n");
    const reader = spawnSluice(["consume", "--topic", "piped", "--from", "beginning", ...broker]);
    reader.child.stdin!.end();
    try {
      await waitFor(() => reader.stdout() === "first\n", "the first record");
      // As `| head -1` does: the read end of the pipe closes, the next write fails.
      reader.child.stdout!.destroy();
      await ok(["produce", "--topic", "piped", ...broker], "second\n");
      assert.equal(await reader.exited, 0, reader.stderr());
    } finally {
      reader.child.kill();
    }
    assert.equal(reader.stderr(), "sluice consume: 1 record\n");
  });

  test("consume of a missing topic is one line, exit 1", async () => {
    const result = await sluice(["consume", "--topic", "nope", "--count", "1", ...server.broker()]);
    assert.deepEqual(result, {
      status: 1,
      stdout: "",
      stderr: "sluice consume: topic 'nope' does not exist\n",
    });
  });
});

describe("sluice client commands without a broker", () => {
  test("bad usage is one line with exit 2", async () => {
    const usage: string[][] = [
      ["produce"],
      ["produce", "--topic", "t", "--acks", "2"],
      ["produce", "--topic", "t", "--key-separator", ""],
      ["produce", "--topic", "t", "extra"],
      ["consume", "--topic", "t", "--from", "sideways"],
      ["consume", "--topic", "t", "--group", "g", "--from", "5"],
      ["consume", "--topic", "t", "--count", "0"],
      ["consume", "--topic", "t", "--timeout-ms", "soon"],
      ["topics"],
      ["topics", "rename", "t"],
      ["topics", "create"],
      ["topics", "list", "--partitions", "3"],
      ["topics", "create", "t", "--config", "retentionMs"],
      ["topics", "create", "t", "--broker", "host:port"],
      ["groups", "describe"],
      ["groups", "rename"],
      ["groups", "list", "extra"],
    ];
    const results = await Promise.all(usage.map((args) => sluice(args)));
    results.forEach((result, i) => {
      const args = usage[i]!;
      assert.equal(result.status, 2, `${args.join(" ")}: ${result.stderr}`);
      assert.equal(lines(result.stderr).length, 1, result.stderr);
      assert.match(result.stderr, new RegExp(`^sluice ${args[0]}: .*--help`));
    });
  });

  test("an unreachable broker is one line with exit 1", async () => {
    const commands = [
      ["topics", "list"],
      ["groups", "describe", "g"],
      ["produce", "--topic", "t"],
    ];
    const results = await Promise.all(
      commands.map((args) => sluice([...args, "--broker", "127.0.0.1:1"])),
    );
    results.forEach((result, i) => {
      assert.equal(result.status, 1, `${commands[i]!.join(" ")}: ${result.stderr}`);
      assert.match(
        result.stderr,
        /^sluice \w+: cannot connect to the broker at 127\.0\.0\.1:1 \(.+\)\n$/,
      );
    });
  });

  test("every client command has --help, and groups is listed", async () => {
    const names = ["topics", "produce", "consume", "groups"];
    const results = await Promise.all(names.map((name) => sluice([name, "--help"])));
    results.forEach((result, i) => {
      assert.equal(result.status, 0, result.stderr);
      assert.match(result.stdout, new RegExp(`^Usage: sluice ${names[i]}`));
      assert.match(result.stdout, /--broker <value>/);
    });
    assert.match(await ok(["--help"]), /^ {2}groups +List consumer groups, or show one/m);
  });
});
