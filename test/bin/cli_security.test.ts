// `sluice users`, `sluice acls` and the security flags end to end: users and ACLs stored
// offline, a `sluice serve --auth scram` process, client commands authenticating with
// --user and SLUICE_PASSWORD, denied commands exiting 1 with the error code, and the same
// changes made online through the broker.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { PROJECT_ROOT, runtimeArgv, tempDir } from "../helpers.ts";
import { run, start } from "../processes.ts";
import { API_KEYS as K, KAFKA_ERRORS as E, type Struct } from "../../protocol/kafka/mod.ts";
import { RawKafka } from "../protocol/kafka/kafka_serving.ts";
import { scramLogin } from "../protocol/kafka/kafka_sasl_client.ts";

const CLI = join(PROJECT_ROOT, "bin/sluice.ts");

function sluice(args: string[], options: { input?: string; password?: string } = {}) {
  const [command, argv] = runtimeArgv(CLI, args);
  const { SLUICE_PASSWORD: _inherited, ...env } = process.env;
  if (options.password !== undefined) env["SLUICE_PASSWORD"] = options.password;
  return run(command, argv, { env, input: options.input ?? "" });
}

async function ok(args: string[], options: { input?: string; password?: string } = {}) {
  const result = await sluice(args, options);
  assert.equal(result.status, 0, `sluice ${args.join(" ")}: ${result.stderr}`);
  return result.stdout;
}

describe("sluice users and acls, and a broker with --auth scram", () => {
  test("offline store, online changes, authenticated and denied commands", async () => {
    using dir = tempDir();
    const data = ["--data", dir.path];
    await ok(["users", "add", "admin", "--password-stdin", ...data], { input: "admin-pw\n" });
    await ok(["users", "add", "alice", "--password-stdin", ...data], { input: "alice-pw\n" });
    const listed = await ok(["users", "list", ...data]);
    assert.match(listed, /alice\s+SCRAM-SHA-256,SCRAM-SHA-512/);
    const stored = readFileSync(join(dir.path, "__meta", "security.json"), "utf8");
    assert.ok(!stored.includes("alice-pw"), "the password itself is never stored");
    const acl = ["--principal", "alice", "--allow", "write", "--topic", "orders"];
    await ok(["acls", "add", ...acl, ...data]);
    assert.match(await ok(["acls", "list", ...data]), /alice\s+allow\s+write\s+topic\s+literal/);

    const [command, argv] = runtimeArgv(
      CLI,
      ["serve", ...data, "--port", "0"].concat(["--auth", "scram", "--super-users", "admin"]),
    );
    await using broker = await start(command, argv, /sluice listening on (\S+):(\d+)/);
    const at = ["--broker", `127.0.0.1:${broker.ready[2]}`];
    const held = await sluice(["users", "add", "bob", "--password-stdin", ...data], {
      input: "x\n",
    });
    assert.equal(held.status, 1);
    assert.match(held.stderr, /held by a running broker/);

    const admin = { password: "admin-pw" };
    const alice = { password: "alice-pw" };
    await ok(["topics", "create", "orders", ...at, "--user", "admin"], admin);
    await ok(["produce", "--topic", "orders", ...at, "--user", "alice"], {
      ...alice,
      input: "a\nb\n",
    });
    const consume = ["consume", "--topic", "orders", "--from", "beginning", "--count", "2", ...at];
    const denied = await sluice([...consume, "--user", "alice"], alice);
    assert.equal(denied.status, 1);
    assert.match(denied.stderr, /AUTHORIZATION_FAILED/);
    const wrong = await sluice(["topics", "list", ...at, "--user", "alice"], { password: "nope" });
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, /AUTHENTICATION_FAILED/);
    const anonymous = await sluice(["topics", "list", ...at]);
    assert.equal(anonymous.status, 1);
    assert.match(anonymous.stderr, /AUTHENTICATION_REQUIRED/);

    const read = ["--principal", "alice", "--allow", "read", "--topic", "orders"];
    await ok(["acls", "add", ...read, ...at, "--user", "admin"], admin);
    assert.equal(await ok([...consume, "--user", "alice"], alice), "a\nb\n");
    // A consumer group needs read on the group as well.
    const group = [...consume, "--group", "billing", "--user", "alice"];
    assert.match((await sluice(group, alice)).stderr, /AUTHORIZATION_FAILED/);
    await ok(
      [
        "acls",
        "add",
        "--principal",
        "alice",
        "--allow",
        "read",
        "--group",
        "billing",
        ...at,
      ].concat(["--user", "admin"]),
      admin,
    );
    assert.equal(await ok(group, alice), "a\nb\n");
    await ok(["users", "add", "carol", "--password-stdin", ...at, "--user", "admin"], {
      ...admin,
      input: "carol-pw\n",
    });
    assert.match(await ok(["users", "list", ...at, "--user", "admin"], admin), /carol/);
    await ok(["topics", "list", ...at, "--user", "carol"], { password: "carol-pw" });
  });

  // The Kafka port used to refuse --auth; it now requires SASL against the same users and ACLs.
  test("serve --auth scram --kafka-port 0: Kafka clients log in, ACLs apply", async () => {
    using dir = tempDir();
    const data = ["--data", dir.path];
    await ok(["users", "add", "alice", "--password-stdin", ...data], { input: "alice-pw\n" });
    await ok([
      "acls",
      "add",
      "--principal",
      "alice",
      "--allow",
      "describe",
      "--topic",
      "seen",
      ...data,
    ]);
    const args = ["serve", ...data, "--port", "0", "--kafka-port", "0", "--auth", "scram"];
    const [command, argv] = runtimeArgv(CLI, args);
    await using broker = await start(
      command,
      argv,
      /kafka listening on \S+:(\d+)\n(?:.*\n)*sluice listening on/,
    );
    const client = await RawKafka.connect(Number(broker.ready[1]));
    try {
      const login = await scramLogin(client, "alice", { password: "alice-pw" });
      assert.equal(login.errorCode, 0);
      const answer = await client.call(K.Metadata, 9, {
        topics: [{ name: "seen" }, { name: "unseen" }],
        allowAutoTopicCreation: true,
      });
      const codes = (answer["topics"] as Struct[]).map((t) => [t["name"], t["errorCode"]]);
      assert.deepEqual(codes.sort(), [
        ["seen", E.UNKNOWN_TOPIC_OR_PARTITION],
        ["unseen", E.TOPIC_AUTHORIZATION_FAILED],
      ]);
    } finally {
      client.close();
    }
    const usage = await sluice([
      "serve",
      ...data,
      "--port",
      "0",
      "--kafka-port",
      "0",
      "--kafka-tls",
    ]);
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /--kafka-tls needs --tls-cert/);
  });
});
