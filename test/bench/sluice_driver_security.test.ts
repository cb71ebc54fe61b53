// The `sluice` bench driver over TLS and with SCRAM (`--driver-options sluice.tls=true,
// sluice.sasl=scram-sha-256`): the server it starts requires both, and its producers (and a
// worker's instance, built from workerOptions) still publish.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createDriver } from "../../bench/drivers/sluice.ts";
import { tempDir } from "../helpers.ts";
import { opensslMissing } from "../protocol/security/certs.ts";

const missing = opensslMissing();

describe("sluice bench driver security options", { skip: missing }, () => {
  test("tls=true, sasl=scram-sha-256: the coordinator and a worker publish", async () => {
    using dir = tempDir();
    const options = { tls: "true", sasl: "scram-sha-256", server: "in-process" };
    const driver = await createDriver({ workDir: dir.path, options });
    try {
      await driver.initialize();
      assert.equal(driver.settings()["authentication"], "SCRAM-SHA-256");
      await driver.createTopic("secure", 1);
      const producer = await driver.createProducer("secure");
      await producer.sendAsync(null, new Uint8Array(16));
      await producer.close();
      // A worker's instance reaches the same server from workerOptions alone.
      using workerDir = tempDir();
      const worker = await createDriver({
        workDir: workerDir.path,
        options: driver.workerOptions!(),
      });
      try {
        await worker.initialize();
        await worker.attachTopic!("secure", 1);
        const workerProducer = await worker.createProducer("secure");
        await workerProducer.sendAsync(null, new Uint8Array(16));
        await workerProducer.close();
      } finally {
        await worker.close();
      }
    } finally {
      await driver.close();
    }
  });

  test("a worker without the credentials is refused", async () => {
    using dir = tempDir();
    const driver = await createDriver({
      workDir: dir.path,
      options: { tls: "true", sasl: "scram-sha-256", server: "in-process" },
    });
    try {
      await driver.initialize();
      const { sasl: _sasl, ...withoutSasl } = driver.workerOptions!();
      using workerDir = tempDir();
      const worker = await createDriver({ workDir: workerDir.path, options: withoutSasl });
      try {
        await assert.rejects(worker.initialize(), /AUTHENTICATION_REQUIRED/);
      } finally {
        await worker.close();
      }
    } finally {
      await driver.close();
    }
  });
});
