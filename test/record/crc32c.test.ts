// CRC-32C: the implementation in use against the portable one and against published values,
// over the lengths where the hardware version changes strategy (the 3 × 4 KiB stride, the
// 8-byte words, the byte tail), at unaligned offsets, and continued from an earlier CRC.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import fc from "fast-check";
import { CRC32C_IMPLEMENTATION, crc32c, crc32cPortable } from "../../record/crc32c.ts";

const STRIDE_BYTES = 3 * 4096;

function patterned(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = state & 0xff;
  }
  return bytes;
}

const isBun = (globalThis as { Bun?: unknown }).Bun !== undefined;

describe("crc32c", () => {
  test("published check values (RFC 3720 B.4 and the 123456789 check)", () => {
    assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
    assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
    assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
    const ascending = Uint8Array.from({ length: 32 }, (_, i) => i);
    assert.equal(crc32c(ascending), 0x46dd794e);
    assert.equal(crc32c(new Uint8Array(0)), 0);
    assert.equal(crc32c(new Uint8Array(0), 0xdeadbeef), 0xdeadbeef);
  });

  test("agrees with the portable version around every length boundary", () => {
    const bytes = patterned(4 * STRIDE_BYTES + 64, 7);
    const lengths = [0, 1, 7, 8, 9, 4095, 4096, 4097];
    for (const base of [STRIDE_BYTES, 2 * STRIDE_BYTES, 3 * STRIDE_BYTES]) {
      for (let delta = -9; delta <= 9; delta++) lengths.push(base + delta);
    }
    for (const offset of [0, 1, 3, 8, 13]) {
      for (const length of lengths) {
        const part = bytes.subarray(offset, offset + length);
        assert.equal(crc32c(part), crc32cPortable(part), `length ${length} at offset ${offset}`);
      }
    }
  });

  test("continues a CRC of 2^31 or more (the high bit set) as well as a small one", () => {
    const bytes = patterned(2 * STRIDE_BYTES + 100, 11);
    let highSeen = false;
    for (let split = 1; split < 40; split++) {
      const head = crc32cPortable(bytes.subarray(0, split));
      if (head >= 2 ** 31) highSeen = true;
      assert.equal(crc32c(bytes.subarray(split), head), crc32cPortable(bytes), `split ${split}`);
    }
    assert.ok(highSeen, "some head CRC has its high bit set");
  });

  test("random inputs, offsets and splits agree with the portable version", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 5 * STRIDE_BYTES }),
        fc.integer({ min: 0, max: 15 }),
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        fc.integer({ min: 1, max: 2 ** 31 }),
        (length, offset, initial, seed) => {
          const part = patterned(length + offset, seed).subarray(offset);
          assert.equal(crc32c(part, initial), crc32cPortable(part, initial));
        },
      ),
      { numRuns: 300 },
    );
  });

  test("the fallback addon, where it loads, agrees with the portable version", async (t) => {
    let addon: ((bytes: Uint8Array, initial?: number) => number) | undefined;
    try {
      addon = (await import("@node-rs/crc32")).crc32c;
    } catch (error) {
      t.skip(`@node-rs/crc32 does not load here (${(error as Error).message})`);
      return;
    }
    const bytes = patterned(2 * STRIDE_BYTES + 21, 5);
    for (const length of [0, 1, 9, 4096, STRIDE_BYTES + 3, bytes.length]) {
      const part = bytes.subarray(1, 1 + Math.min(length, bytes.length - 1));
      assert.equal(addon(part) >>> 0, crc32cPortable(part), `length ${part.length}`);
      const head = crc32cPortable(part.subarray(0, Math.min(5, part.length)));
      const rest = part.subarray(Math.min(5, part.length));
      assert.equal(addon(rest, head) >>> 0, crc32cPortable(part), `continued, ${part.length}`);
    }
  });

  test("Bun on x86-64 with SSE 4.2 uses the hardware version", (t) => {
    const sse42 = cpuHasSse42();
    if (!isBun || process.arch !== "x64" || sse42 !== true) {
      t.skip(`not Bun on an x86-64 with SSE 4.2 (arch ${process.arch}, sse4_2 ${sse42})`);
      return;
    }
    assert.equal(CRC32C_IMPLEMENTATION, "hardware");
  });
});

/** Whether /proc/cpuinfo lists sse4_2; undefined where it cannot be read. */
function cpuHasSse42(): boolean | undefined {
  try {
    return /\bsse4_2\b/.test(readFileSync("/proc/cpuinfo", "utf8"));
  } catch {
    return undefined;
  }
}
