// The `sluice` bench driver's partitionSync option (`--driver-options sluice.partitionSync=
// flush`): handed to the server it starts, shown in its settings, not passed on to workers
// (which connect to that server), and a bad value or an external server is refused.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createDriver } from "../../bench/drivers/sluice.ts";
import { tempDir } from "../helpers.ts";

describe("sluice bench driver partitionSync", () => {
  test("flush: an in-process server starts with it; workers are not given it", async () => {
    using dir = tempDir();
    const options = { partitionSync: "flush", server: "in-process", acks: "all" };
    const driver = await createDriver({ workDir: dir.path, options });
    try {
      await driver.initialize();
      assert.equal(driver.settings()["partitionSync"], "flush");
      await driver.createTopic("synced", 2);
      const producer = await driver.createProducer("synced");
      for (let i = 0; i < 3; i++) await producer.sendAsync(null, new Uint8Array(16));
      await producer.close();
      const reading = await driver.diskSyncs!();
      assert.notEqual(reading, null);
      assert.equal(driver.workerOptions!()["partitionSync"], undefined);
    } finally {
      await driver.close();
    }
  });

  test("a bad value, or one for an external server, is refused", async () => {
    using dir = tempDir();
    await assert.rejects(
      async () => createDriver({ workDir: dir.path, options: { partitionSync: "syncfs" } }),
      /partitionSync=syncfs must be auto, fdatasync or flush/,
    );
    const external = { partitionSync: "flush", url: "127.0.0.1:9092" };
    await assert.rejects(
      async () => createDriver({ workDir: dir.path, options: external }),
      /partitionSync applies to a server the driver starts/,
    );
  });
});

describe("sluice bench driver queueFetchAckWaitMs", () => {
  test("an in-process server starts with it; workers are not given it", async () => {
    using dir = tempDir();
    const options = { queueFetchAckWaitMs: "0", server: "in-process" };
    const driver = await createDriver({ workDir: dir.path, options });
    try {
      await driver.initialize();
      assert.equal(driver.settings()["queueFetchAckWaitMs"], 0);
      assert.equal(driver.workerOptions!()["queueFetchAckWaitMs"], undefined);
    } finally {
      await driver.close();
    }
  });

  test("a value out of range, or one for an external server, is refused", async () => {
    using dir = tempDir();
    await assert.rejects(
      async () => createDriver({ workDir: dir.path, options: { queueFetchAckWaitMs: "1001" } }),
      /queueFetchAckWaitMs.*1001/,
    );
    const external = { queueFetchAckWaitMs: "5", url: "127.0.0.1:9092" };
    await assert.rejects(
      async () => createDriver({ workDir: dir.path, options: external }),
      /queueFetchAckWaitMs applies to a server the driver starts/,
    );
  });
});

describe("sluice bench driver queueSyncsInFlight", () => {
  test("an in-process server's engine gets it; workers do not", async () => {
    using dir = tempDir();
    const options = { queueSyncsInFlight: "1", server: "in-process" };
    const driver = await createDriver({ workDir: dir.path, options });
    try {
      await driver.initialize();
      assert.equal(driver.settings()["queueSyncsInFlight"], 1);
      assert.equal(driver.workerOptions!()["queueSyncsInFlight"], undefined);
    } finally {
      await driver.close();
    }
  });

  test("a value out of range, or one for an external server, is refused", async () => {
    using dir = tempDir();
    await assert.rejects(
      async () => createDriver({ workDir: dir.path, options: { queueSyncsInFlight: "9" } }),
      /queueSyncsInFlight.*9/,
    );
    const external = { queueSyncsInFlight: "1", url: "127.0.0.1:9092" };
    await assert.rejects(
      async () => createDriver({ workDir: dir.path, options: external }),
      /queueSyncsInFlight applies to a server the driver starts/,
    );
  });
});

describe("sluice bench driver dropBehind", () => {
  test("off reaches a server it starts; a bad value or an external server is refused", async () => {
    using dir = tempDir();
    const driver = await createDriver({
      workDir: dir.path,
      options: { dropBehind: "off", server: "in-process" },
    });
    try {
      await driver.initialize();
      assert.equal(driver.settings()["dropBehind"], "off");
      assert.equal(driver.workerOptions!()["dropBehind"], undefined);
    } finally {
      await driver.close();
    }
    await assert.rejects(
      async () => createDriver({ workDir: dir.path, options: { dropBehind: "yes" } }),
      /dropBehind=yes must be on or off/,
    );
    await assert.rejects(
      async () =>
        createDriver({ workDir: dir.path, options: { dropBehind: "on", url: "127.0.0.1:9092" } }),
      /dropBehind applies to a server the driver starts/,
    );
  });
});

describe("sluice bench driver gc", () => {
  test("tuned reaches a server process it starts; a bad value or none is refused", async () => {
    using dir = tempDir();
    const driver = await createDriver({ workDir: dir.path, options: { gc: "tuned" } });
    try {
      await driver.initialize();
      assert.equal(driver.settings()["gc"], "tuned");
      assert.equal(driver.workerOptions!()["gc"], undefined);
    } finally {
      await driver.close();
    }
    await assert.rejects(
      async () => createDriver({ workDir: dir.path, options: { gc: "fast" } }),
      /gc=fast must be tuned or default/,
    );
    const misplaced: Record<string, string>[] = [
      { gc: "default", url: "127.0.0.1:9092" },
      { gc: "tuned", server: "in-process" },
    ];
    for (const options of misplaced) {
      await assert.rejects(
        async () => createDriver({ workDir: dir.path, options }),
        /gc applies to a server process the driver starts/,
      );
    }
  });
});
