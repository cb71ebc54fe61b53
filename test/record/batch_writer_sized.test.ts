// BatchWriter.tryAddSizedAtZero: a record whose body size at deltas 0 was worked out once (the
// producer does it when the record is sent) is sized from that alone, and the writer makes the
// same bytes, and stops at the same record for batchBytesMax, as `tryAdd` sizing every field.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { BatchWriter, recordBodyBytes, type WriterRecord } from "../../record/mod.ts";
import { mulberry32 } from "../helpers.ts";

function randomRecord(next: () => number, baseMs: number): WriterRecord {
  const bytes = (length: number) => Uint8Array.from({ length }, () => Math.floor(next() * 256));
  const sizes = [0, 1, 16, 17, 63, 64, 127, 128, 300, 1024, 20_000];
  const pick = () => sizes[Math.floor(next() * sizes.length)]!;
  const headerCount = Math.floor(next() * 3);
  return {
    key: next() < 0.3 ? null : bytes(pick()),
    value: next() < 0.1 ? null : bytes(pick()),
    headers: Array.from({ length: headerCount }, (_, h) => ({
      key: h === 0 ? "é-key" : `k${h}`,
      value: next() < 0.5 ? null : bytes(pick()),
    })),
    // Deltas of every varlong width, earlier than the first record too.
    timestamp: baseMs + Math.round((next() - 0.3) * 10 ** Math.floor(next() * 12)),
  };
}

describe("BatchWriter.tryAddSizedAtZero", () => {
  test("writes the bytes tryAdd writes and stops at the same record (300 seeded batches)", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const next = mulberry32(seed);
      const batchBytesMax = 200 + Math.floor(next() * 60_000);
      const sized = new BatchWriter({ batchBytesMax });
      const plain = new BatchWriter({ batchBytesMax });
      const baseMs = 1_700_000_000_000;
      for (let i = 0; i < 200; i++) {
        const record = randomRecord(next, baseMs);
        const atZero = recordBodyBytes(record, 0, 0);
        const tookPlain = plain.tryAdd(record);
        const tookSized = sized.tryAddSizedAtZero(record, atZero);
        assert.equal(tookSized, tookPlain, `seed ${seed} record ${i}`);
        if (!tookPlain) break;
      }
      assert.equal(sized.sizeBytes, plain.sizeBytes, `seed ${seed}`);
      assert.deepEqual(sized.stamp(), plain.stamp(), `seed ${seed}`);
    }
  });
});
