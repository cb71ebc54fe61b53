// A full disk, end to end: a server whose data directory is a tiny tmpfs, and the real client.
// The Producer's send() rejects with DISK_FULL soon after the disk fills (not REQUEST_TIMED_OUT
// after deliveryTimeoutMs of retries), the same producer delivers again once space is freed,
// and the records acknowledged are the ones a consumer reads back.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Admin, Consumer, Producer } from "../../protocol/client/mod.ts";
import { SluiceServer } from "../../protocol/server/mod.ts";
import { fillUp, mountTinyTmpfs, tmpfsUnavailable, unmount } from "../tmpfs.ts";

/** Long enough that a DISK_FULL retried until it expires would show as REQUEST_TIMED_OUT. */
const DELIVERY_TIMEOUT_MS = 5000;
const SENDS_MAX = 400;

describe("a full disk through the socket (tmpfs of 1 MiB)", () => {
  const skip = tmpfsUnavailable();

  test("the Producer reports DISK_FULL to its caller, then delivers once space is freed", {
    skip,
  }, async () => {
    const mount = mountTinyTmpfs(1024 * 1024);
    if ("reason" in mount) assert.fail(mount.reason);
    const filler = join(mount.path, "filler");
    let server: SluiceServer | undefined;
    let producer: Producer | undefined;
    try {
      server = await SluiceServer.start({
        dataDir: join(mount.path, "data"),
        port: 0,
        log: () => {},
      });
      const port = server.port;
      const admin = new Admin({ port });
      await admin.createTopics([{ name: "t", partitions: 1, config: { fsync: "always" } }]);
      await admin.close();
      producer = new Producer({
        port,
        acks: "all",
        lingerMs: 0,
        deliveryTimeoutMs: DELIVERY_TIMEOUT_MS,
      });
      // Leave room for a few records only: the log's last page and a little more.
      fillUp(filler);
      fs.truncateSync(filler, Math.max(0, fs.statSync(filler).size - 64 * 1024));
      const value = new Uint8Array(4096).fill(7);
      let delivered = 0;
      let failure: { code?: string; message: string } | undefined;
      const startedMs = performance.now();
      for (let i = 0; i < SENDS_MAX && failure === undefined; i++) {
        await producer.send({ topic: "t", partition: 0, value }).then(
          () => delivered++,
          (error: { code?: string; message: string }) => {
            failure = error;
          },
        );
      }
      const tookMs = performance.now() - startedMs;
      assert.ok(failure !== undefined, `the disk filled up (${delivered} records delivered)`);
      assert.equal(failure.code, "DISK_FULL", failure.message);
      assert.ok(tookMs < DELIVERY_TIMEOUT_MS, `reported after ${Math.round(tookMs)} ms`);
      fs.rmSync(filler);
      await producer.send({ topic: "t", partition: 0, value });
      delivered++;
      await producer.close();
      producer = undefined;

      const consumer = new Consumer({ port, maxWaitMs: 50 });
      try {
        consumer.assign([{ topic: "t", partition: 0 }]);
        consumer.seek({ topic: "t", partition: 0, offset: 0 });
        let read = 0;
        for (let polls = 0; polls < 200 && read < delivered; polls++) {
          read += (await consumer.poll()).length;
        }
        assert.equal(read, delivered, "every acknowledged record is there, and nothing else");
      } finally {
        await consumer.close();
      }
    } finally {
      await producer?.close().catch(() => {});
      await server?.close();
      unmount(mount.path);
    }
  });
});
