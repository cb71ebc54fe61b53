// Every write the engine makes goes through its FileIO, so fault injection reaches all of them.
// Proof by refusal: once the FileIO refuses every write and fsync, every operation that would
// write fails with a typed error, and not one byte of any file in the data directory changes.
// A write that bypassed the FileIO would show up as a changed file.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import { join, relative } from "node:path";
import { describe, test } from "node:test";
import { Engine, encodeRecordBatch, isSluiceError } from "../../engine/mod.ts";
import { tempDir } from "../helpers.ts";
import { FaultyIO } from "./partition_log_helpers.ts";

/** Each regular file under `dir` by relative path: its size and a hash of its bytes. */
function snapshot(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (at: string) => {
    for (const entry of fs.readdirSync(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) walk(path);
      else
        files.set(
          relative(dir, path),
          createHash("sha256").update(fs.readFileSync(path)).digest("hex"),
        );
    }
  };
  walk(dir);
  return files;
}

const EMPTY_SHA256 = createHash("sha256").update(new Uint8Array(0)).digest("hex");

function batch(): Uint8Array {
  return encodeRecordBatch([{ value: new TextEncoder().encode("v") }], { timestamp: 1 });
}

describe("engine file I/O", () => {
  test("with every write refused, operations fail typed and no file changes", async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    const warnings: string[] = [];
    const engine = await Engine.open(dir.path, { io, onWarning: (m) => warnings.push(m) });
    let closed = false;
    try {
      await engine.createTopic("t", { partitions: 1, config: { fsync: "always" } });
      await engine.append("t", 0, batch());
      await engine.offsets.commit("g", [{ topic: "t", partition: 0, offset: 1 }]);
      engine.allocateProducerId();
      const before = snapshot(dir.path);

      io.onWrite = () => ({ code: "ENOSPC" });
      io.onSync = () => ({ code: "ENOSPC" });
      io.onFileWrite = () => ({ code: "ENOSPC" });
      const failures: unknown[] = [];
      const attempt = async (action: () => unknown) => {
        try {
          await action();
          failures.push(undefined);
        } catch (error) {
          failures.push(error);
        }
      };
      await attempt(() => engine.createTopic("u", { partitions: 1 }));
      await attempt(() => engine.append("t", 0, batch()));
      await attempt(() => engine.offsets.commit("g", [{ topic: "t", partition: 0, offset: 2 }]));
      // Producer ids are reserved in blocks: force a new block so the reservation must write.
      await attempt(() => {
        for (let i = 0; i < 100_000; i++) engine.allocateProducerId();
      });
      for (const failure of failures) {
        assert.ok(isSluiceError(failure), `a typed SluiceError, not ${String(failure)}`);
        assert.ok(
          ["DISK_FULL", "LOG_FENCED"].includes(failure.code),
          `DISK_FULL or LOG_FENCED, not ${failure.code}`,
        );
      }
      await engine.close().catch(() => {});
      closed = true;

      const after = snapshot(dir.path);
      for (const [path, hash] of after) {
        const was = before.get(path);
        if (was === undefined) assert.equal(hash, EMPTY_SHA256, `${path} is new and must be empty`);
        else assert.equal(hash, was, `${path} changed without a write through the FileIO`);
      }
      assert.ok(io.fileWrites.length > 0, "file-level writes were asked of the FileIO");
    } finally {
      if (!closed) await engine.close().catch(() => {});
    }
  });

  test("a clean close writes the engine checkpoint and a changed partition's marker", async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    const engine = await Engine.open(dir.path, { io, onWarning: () => {} });
    await engine.createTopic("t", { partitions: 2, config: { fsync: "always" } });
    await engine.append("t", 1, batch());
    io.fileWrites.length = 0;
    await engine.close();
    const written = io.fileWrites.map((path) => relative(dir.path, path));
    assert.ok(written.includes("t-1/.clean-shutdown"), "t-1's marker");
    // Every partition's recovery point goes to the engine's one checkpoint file.
    assert.ok(written.includes("__meta/recovery-points.tmp"), "the engine's checkpoint");
    assert.ok(!written.includes("t-1/recovery-point.tmp"), "no per-partition checkpoint");
    // t-0 was never written to: clean since it was created, it needs no write to close.
    assert.deepEqual(
      written.filter((path) => path.startsWith("t-0/")),
      [],
      "an untouched partition closes without a write",
    );
    assert.ok(fs.existsSync(join(dir.path, "t-0", ".clean-shutdown")), "t-0 stays marked clean");
  });

  test("a refused lock-file write fails Engine.open with DISK_FULL", async () => {
    using dir = tempDir();
    const io = new FaultyIO();
    io.onFileWrite = (path) => (path.endsWith(".lock") ? { code: "ENOSPC" } : undefined);
    await assert.rejects(
      () => Engine.open(dir.path, { io, onWarning: () => {} }),
      (error: unknown) => isSluiceError(error, "DISK_FULL"),
    );
    const engine = await Engine.open(dir.path, { onWarning: () => {} });
    await engine.close();
  });
});
