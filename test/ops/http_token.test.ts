// The HTTP listener behind a token: with authentication on, `serve` refuses an HTTP port
// without one; with one, every path answers 401 unless the request carries it (Bearer, or the
// password of HTTP Basic). With authentication on, the overview still shows every group's
// state and members: it reads them from the broker in process, needing none of the native
// listener's credentials. Security and Kafka settings come from the config file and the
// environment too, like every other setting.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { flagsWithSettings, resolveServeSettings } from "../../bin/serve_config.ts";
import { Engine } from "../../engine/mod.ts";
import { startOpsHttp } from "../../ops/http.ts";
import type { Snapshot } from "../../ops/snapshot.ts";
import { Admin, Consumer, Producer } from "../../protocol/client/mod.ts";
import { PROJECT_ROOT, runtimeArgv, tempDir, waitFor } from "../helpers.ts";
import { run } from "../processes.ts";
import { PASSWORD, startSecureServer } from "../protocol/security/secure_server.ts";

const CLI = join(PROJECT_ROOT, "bin", "sluice.ts");

async function status(port: number, path: string, authorization?: string): Promise<number> {
  const headers: Record<string, string> = authorization === undefined ? {} : { authorization };
  const response = await fetch(`http://127.0.0.1:${port}${path}`, { headers });
  await response.arrayBuffer();
  return response.status;
}

describe("HTTP token", () => {
  test("every path needs the token, as Bearer or as Basic's password", async () => {
    using dir = tempDir();
    const engine = await Engine.open(dir.path);
    const http = await startOpsHttp({ host: "127.0.0.1", port: 0, engine, token: "s3cret" });
    try {
      const basic = (user: string, password: string) =>
        `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
      for (const path of ["/healthz", "/readyz", "/metrics", "/api/overview", "/", "/nothing"]) {
        assert.equal(await status(http.port, path), 401, `${path} without a token`);
        assert.equal(await status(http.port, path, "Bearer wrong"), 401, `${path} wrong`);
        assert.equal(await status(http.port, path, basic("ops", "s3cre")), 401, path);
        assert.equal(await status(http.port, path, "Bearer"), 401, `${path} empty bearer`);
      }
      assert.equal(await status(http.port, "/healthz", "Bearer s3cret"), 200);
      assert.equal(await status(http.port, "/metrics", basic("anyone", "s3cret")), 200);
      assert.equal(await status(http.port, "/nothing", "Bearer s3cret"), 404);
      const refused = await fetch(`http://127.0.0.1:${http.port}/`);
      await refused.arrayBuffer();
      assert.match(refused.headers.get("www-authenticate") ?? "", /^Basic realm="sluice"/);
    } finally {
      await http.close();
      await engine.close();
    }
  });

  test("with authentication on, the overview shows groups' state and members", async () => {
    await using served = await startSecureServer(["admin"]);
    const http = await startOpsHttp({
      host: "127.0.0.1",
      port: 0,
      engine: served.server.engine,
      token: "s3cret",
    });
    http.ready(served.server);
    const sasl = { username: "admin", password: PASSWORD };
    const client = { host: "127.0.0.1", port: served.port, sasl };
    const admin = new Admin(client);
    const consumer = new Consumer({ ...client, group: "billing", maxWaitMs: 20 });
    const overview = async (): Promise<Snapshot> => {
      const response = await fetch(`http://127.0.0.1:${http.port}/api/overview`, {
        headers: { authorization: "Bearer s3cret" },
      });
      assert.equal(response.status, 200);
      return (await response.json()) as Snapshot;
    };
    try {
      await admin.createTopics([{ name: "invoices", partitions: 2 }]);
      await admin.declareExchange("events", { type: "topic", alternateTopic: "invoices" });
      await admin.bindExchange("events", { topic: "invoices", routingKey: "invoice.#" });
      const producer = new Producer({ ...client, acks: "all" });
      await producer.send({
        topic: "invoices",
        partition: 0,
        value: new TextEncoder().encode("a"),
      });
      await producer.close();
      consumer.subscribe(["invoices"], { fromBeginning: true });
      await waitFor(
        async () => (await consumer.poll({ maxWaitMs: 50 })).length > 0,
        "the group's first record",
      );
      await consumer.commit();
      await waitFor(
        async () => (await overview()).groups.some((g) => g.state === "stable"),
        "the group to be stable",
      );
      const group = (await overview()).groups.find((g) => g.group === "billing");
      assert.equal(group?.memberCount, 1);
      assert.deepEqual(group?.members, [consumer.memberId]);
      assert.equal(group?.lag, 0);
      const exchanges = (await overview()).exchanges;
      assert.deepEqual(exchanges, [
        {
          name: "events",
          type: "topic",
          bindings: 1,
          alternateExchange: null,
          alternateTopic: "invoices",
        },
      ]);
      await consumer.close();
      const left = (await overview()).groups.find((g) => g.group === "billing");
      assert.deepEqual(
        { state: left?.state, memberCount: left?.memberCount, members: left?.members },
        { state: "empty", memberCount: 0, members: [] },
      );
    } finally {
      await consumer.close();
      await admin.close();
      await http.close();
    }
  });

  test("serve with --auth and --http-port but no token refuses to start", async () => {
    using dir = tempDir();
    const [command, argv] = runtimeArgv(CLI, [
      "serve",
      "--data",
      dir.path,
      "--port",
      "0",
      "--auth",
      "scram",
      "--http-port",
      "0",
    ]);
    const result = await run(command, argv);
    assert.equal(result.status, 2, result.stderr);
    assert.match(result.stderr, /the HTTP port needs a token: --http-token/);
  });

  test("security and Kafka settings come from the config file and the environment", () => {
    using dir = tempDir();
    const file = join(dir.path, "sluice.toml");
    fs.writeFileSync(
      file,
      [
        "[tls]",
        'cert = "/etc/sluice/cert.pem"',
        'key = "/etc/sluice/key.pem"',
        "port = 7453",
        "[security]",
        'auth = "scram"',
        'superUsers = "admin"',
        "[kafka]",
        "port = 9092",
        "[http]",
        "port = 7460",
        'token = "from-file"',
      ].join("\n"),
    );
    const resolved = resolveServeSettings({ config: file }, { SLUICE_HTTP_TOKEN: "from-env" });
    assert.equal(resolved.settings.httpToken, "from-env");
    assert.equal(resolved.sources.httpToken, "env");
    const flags = flagsWithSettings({ config: file, "super-users": "root" }, resolved);
    assert.equal(flags["tls-cert"], "/etc/sluice/cert.pem");
    assert.equal(flags["tls-port"], "7453");
    assert.equal(flags["auth"], "scram");
    assert.equal(flags["super-users"], "root", "a flag wins over the file");
    assert.equal(flags["kafka-port"], "9092");
    assert.throws(
      () => resolveServeSettings({}, { SLUICE_TLS_PRINCIPAL: "uid" }),
      /SLUICE_TLS_PRINCIPAL: expected one of cn, dn/,
    );
  });
});
