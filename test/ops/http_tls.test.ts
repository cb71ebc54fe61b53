// HTTPS on the HTTP listener (`serve --http-tls`, the native listener's certificate and key):
// a client trusting the CA gets its answers, and the token still applies; a plaintext HTTP
// request is not served; `--http-tls` without a certificate is a usage error.

import assert from "node:assert/strict";
import https from "node:https";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Engine } from "../../engine/mod.ts";
import { startOpsHttp } from "../../ops/http.ts";
import { PROJECT_ROOT, runtimeArgv, tempDir } from "../helpers.ts";
import { run } from "../processes.ts";
import { makeTestCerts, opensslMissing } from "../protocol/security/certs.ts";

const CLI = join(PROJECT_ROOT, "bin", "sluice.ts");
const missing = opensslMissing();
if (missing !== undefined) console.warn(`skipping the HTTPS tests: ${missing}`);

function get(port: number, path: string, ca: string, token?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> =
      token === undefined ? {} : { authorization: `Bearer ${token}` };
    const request = https.get(
      { host: "127.0.0.1", port, path, ca, servername: "localhost", headers },
      (response) => {
        response.resume();
        response.on("end", () => resolve(response.statusCode ?? 0));
      },
    );
    request.on("error", reject);
  });
}

describe("HTTP listener over TLS", { skip: missing }, () => {
  test("HTTPS answers a client that trusts the CA; plaintext HTTP is not served", async () => {
    using certs = makeTestCerts();
    using dir = tempDir();
    const engine = await Engine.open(dir.path);
    const http = await startOpsHttp({
      host: "127.0.0.1",
      port: 0,
      engine,
      token: "s3cret",
      tls: { cert: certs.pem("server.pem"), key: certs.pem("server.key") },
    });
    try {
      assert.equal(http.tls, true);
      const ca = certs.pem("ca.pem");
      assert.equal(await get(http.port, "/healthz", ca, "s3cret"), 200);
      assert.equal(await get(http.port, "/metrics", ca), 401);
      await assert.rejects(get(http.port, "/healthz", certs.pem("other-ca.pem"), "s3cret"));
      const plaintext = await fetch(`http://127.0.0.1:${http.port}/healthz`).then(
        (response) => response.status,
        () => "refused",
      );
      assert.notEqual(plaintext, 200);
    } finally {
      await http.close();
      await engine.close();
    }
  });

  test("serve --http-tls without --tls-cert is a usage error", async () => {
    using dir = tempDir();
    const args = ["serve", "--data", dir.path, "--port", "0", "--http-port", "0", "--http-tls"];
    const [command, argv] = runtimeArgv(CLI, args);
    const result = await run(command, argv);
    assert.equal(result.status, 2, result.stderr);
    assert.match(result.stderr, /--http-tls needs --tls-cert and --tls-key/);
  });
});
