// The client must run under Node >= 20 too, for Node services. Node 20 cannot load TypeScript,
// so this test bundles protocol/client/mod.ts to one JavaScript file with Bun's bundler and runs
// a producer and a consumer under the machine's `node` against a real server. It runs under Bun
// (which has the bundler) and is skipped, with the reason, elsewhere or without node.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { SluiceServer } from "../../../protocol/server/mod.ts";
import { PROJECT_ROOT, tempDir } from "../../helpers.ts";

type BunBuild = (options: {
  entrypoints: string[];
  outdir: string;
  target: "node";
  format: "esm";
}) => Promise<{ success: boolean; logs: unknown[] }>;

const bunBuild = (globalThis as { Bun?: { build?: BunBuild } }).Bun?.build;
const node = spawnSync("node", ["--version"], { encoding: "utf8" });
const nodeMajor = Number(/^v(\d+)/.exec(node.stdout ?? "")?.[1] ?? 0);
const skip =
  bunBuild === undefined
    ? "bundling needs Bun's bundler (this runs under Bun)"
    : nodeMajor < 20
      ? "no node >= 20 on this machine"
      : false;

const SCRIPT = `
import { Admin, Consumer, Producer } from "./mod.js";
const port = Number(process.argv[2]);
const admin = new Admin({ port });
await admin.createTopics([{ name: "from-node", partitions: 2 }]);
await admin.close();
const producer = new Producer({ port, acks: "all" });
for (let i = 0; i < 10; i++) {
  await producer.send({ topic: "from-node", key: "k" + i, value: "v" + i });
}
await producer.close();
const consumer = new Consumer({ port, autoOffsetReset: "earliest" });
consumer.assign([{ topic: "from-node", partition: 0 }, { topic: "from-node", partition: 1 }]);
const values = [];
while (values.length < 10) {
  for (const r of await consumer.poll({ maxWaitMs: 1000 })) {
    values.push(new TextDecoder().decode(r.value));
  }
}
await consumer.close();
console.log(values.sort().join(","));
`;

test("the client bundled to JavaScript produces and consumes under Node", {
  skip,
  timeout: 60_000,
}, async () => {
  using dir = tempDir();
  const outdir = join(dir.path, "bundle");
  const built = await bunBuild!({
    entrypoints: [join(PROJECT_ROOT, "protocol/client/mod.ts")],
    outdir,
    target: "node",
    format: "esm",
  });
  assert.ok(built.success, JSON.stringify(built.logs));
  fs.writeFileSync(join(outdir, "run.mjs"), SCRIPT);
  const server = await SluiceServer.start({
    dataDir: join(dir.path, "data"),
    port: 0,
    engineOptions: { onWarning: () => {} },
  });
  try {
    const { spawn } = await import("node:child_process");
    const child = spawn("node", [join(outdir, "run.mjs"), String(server.port)]);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    assert.equal(code, 0, stderr);
    const expected = Array.from({ length: 10 }, (_, i) => `v${i}`)
      .sort()
      .join(",");
    assert.equal(stdout.trim(), expected);
  } finally {
    await server.close();
  }
});
