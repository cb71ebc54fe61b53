// The Kafka listener has no SASL or ACL checks: a server asked for both authentication and a
// Kafka port refuses to start (issue "Kafka listener": require SASL or refuse), and leaves
// nothing listening and its engine closed, so the data directory opens again at once.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Engine } from "../../../engine/mod.ts";
import { SluiceError } from "../../../record/mod.ts";
import { SluiceServer } from "../../../protocol/server/mod.ts";

test("a server with authentication on and a Kafka port refuses to start", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "sluice-kafka-auth-"));
  try {
    await assert.rejects(
      SluiceServer.start({
        dataDir,
        host: "127.0.0.1",
        port: 0,
        kafka: { port: 0 },
        security: { auth: ["scram"] },
      }),
      (error: unknown) =>
        error instanceof SluiceError &&
        error.code === "INVALID_CONFIG" &&
        /Kafka listener/.test(error.message),
    );
    // The refused start closed its engine: the directory is free for the next one.
    const engine = await Engine.open(dataDir);
    await engine.close();
    // Authentication alone, and the Kafka port alone, still start.
    for (const options of [
      { security: { auth: ["scram"] as "scram"[] } },
      { kafka: { port: 0 } },
    ]) {
      const server = await SluiceServer.start({ dataDir, host: "127.0.0.1", port: 0, ...options });
      await server.close();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
