import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  compressionName,
  compressRecords,
  DECOMPRESSED_BYTES_MAX,
  decompressRecords,
  isCompressionAvailable,
} from "../../record/mod.ts";
import { isSluiceError } from "../../record/mod.ts";

const text = new TextEncoder().encode("sluice ".repeat(1000));
const zstdSkip = isCompressionAvailable("zstd") ? false : "this runtime's node:zlib has no zstd";

function codecTest(name: "gzip" | "zstd", title: string, body: () => void): void {
  test(`${name}: ${title}`, { skip: name === "zstd" ? zstdSkip : false }, body);
}

describe("compression", () => {
  test("names the codec of each attribute value", () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7, 0x18].map(compressionName), [
      "none",
      "gzip",
      "snappy",
      "lz4",
      "zstd",
      undefined,
      undefined,
      undefined,
      "none",
    ]);
  });

  test("none passes bytes through", () => {
    assert.equal(compressRecords("none", text), text);
    assert.equal(decompressRecords("none", text), text);
  });

  for (const name of ["gzip", "zstd"] as const) {
    codecTest(name, "round-trips and returns a plain Uint8Array", () => {
      const compressed = compressRecords(name, text, { level: 3 });
      assert.ok(compressed.length < text.length / 10);
      const restored = decompressRecords(name, compressed);
      assert.equal(Object.getPrototypeOf(restored), Uint8Array.prototype);
      assert.deepEqual(restored, text);
    });

    codecTest(name, "output past decompressedBytesMax is BATCH_TOO_LARGE", () => {
      const compressed = compressRecords(name, text);
      assert.throws(
        () => decompressRecords(name, compressed, { decompressedBytesMax: text.length - 1 }),
        (error) =>
          isSluiceError(error, "BATCH_TOO_LARGE") &&
          /decompressedBytesMax 6999/.test(error.message),
      );
      assert.equal(
        decompressRecords(name, compressed, { decompressedBytesMax: text.length }).length,
        text.length,
      );
    });

    codecTest(name, "bytes that are not a stream are INVALID_BATCH", () => {
      assert.throws(
        () => decompressRecords(name, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])),
        (error) => isSluiceError(error, "INVALID_BATCH") && error.message.includes(name),
      );
    });
  }

  for (const name of ["snappy", "lz4"] as const) {
    test(`${name} is UNSUPPORTED_COMPRESSION, named in the message`, () => {
      assert.equal(isCompressionAvailable(name), false);
      for (const call of [() => compressRecords(name, text), () => decompressRecords(name, text)]) {
        assert.throws(
          call,
          (error) =>
            isSluiceError(error, "UNSUPPORTED_COMPRESSION") && error.message.includes(name),
        );
      }
    });
  }

  test("a bad limit or codec name is a caller's error", () => {
    assert.throws(() => decompressRecords("gzip", text, { decompressedBytesMax: 0 }), RangeError);
    assert.throws(() => decompressRecords("gzip", text, { decompressedBytesMax: 1.5 }), RangeError);
    assert.throws(() => compressRecords("brotli" as "gzip", text), TypeError);
    assert.ok(DECOMPRESSED_BYTES_MAX >= 1024 * 1024);
  });
});
