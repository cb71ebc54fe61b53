// Embedding the sluice engine: open a data directory, create a topic, append records, and read
// them back by offset and by timestamp. It imports sluice by its package name, so it runs as is
// in any project that installed sluice:
//
//   bun examples/embed.ts [DIR]
//   deno run --allow-read --allow-write --allow-env --deny-ffi examples/embed.ts [DIR]
//
// Without DIR it uses a fresh temporary directory and removes it at the end. On Deno, --deny-ffi
// keeps it from asking to load native addons (it uses their JavaScript fallbacks instead);
// --allow-ffi lets it load them, for speed.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeRecordBatches, Engine, encodeRecordBatch } from "sluice/engine";

const dataDir = process.argv[2] ?? mkdtempSync(join(tmpdir(), "sluice-embed-"));
const engine = await Engine.open(dataDir);
try {
  await engine.createTopic("orders", { partitions: 2, config: { fsync: "always" } });

  // A batch is Kafka's RecordBatch v2; the engine assigns the offsets when it appends.
  const text = new TextEncoder();
  const start = Date.parse("2026-01-01T00:00:00Z");
  const batch = encodeRecordBatch(
    ["apple", "banana", "cherry"].map((fruit, i) => ({
      key: text.encode(`order-${i}`),
      value: text.encode(fruit),
      timestamp: start + i * 1000,
    })),
  );
  const appended = await engine.append("orders", 0, batch);
  console.log(`appended offsets ${appended.baseOffset}..${appended.lastOffset}`);

  // Reading returns views of whole stored batches; decoding them is the reader's choice.
  const read = engine.read("orders", 0, 1, 1024 * 1024);
  const decoder = new TextDecoder();
  for (const view of read.views) {
    for (const stored of decodeRecordBatches(view)) {
      for (const record of stored.records) {
        if (record.offset < 1) continue; // the batch holding offset 1 starts at offset 0
        console.log(`offset ${record.offset}: ${decoder.decode(record.value ?? new Uint8Array())}`);
      }
    }
  }

  const offset = engine.offsetForTimestamp("orders", 0, start + 1500);
  console.log(`first offset at or after +1.5 s: ${offset}`);
} finally {
  await engine.close();
  if (process.argv[2] === undefined) rmSync(dataDir, { recursive: true, force: true });
}
