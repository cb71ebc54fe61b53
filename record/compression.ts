// The codecs behind a batch's compression attribute (bits 0-2): 0 none, 1 gzip, 2 snappy,
// 3 lz4, 4 zstd. A compressed batch compresses its records section as one block; the 61-byte
// header stays plain, and the CRC covers the compressed bytes.
//
// gzip and zstd come from `node:zlib`, which both runtimes implement, zstd included (measured
// on Bun 1.4.5 and Deno 2.9.6). Bun's own `Bun.zstdDecompressSync` is not used: it takes no
// output limit, and an output limit is what keeps a small hostile batch from claiming gigabytes
// once inflated (a 512 MiB run of zeros is 16 KiB as zstd). `node:zlib` stops at
// `maxOutputLength` and throws, which becomes a typed BATCH_TOO_LARGE here. snappy and lz4 have
// no built-in codec in either runtime and report UNSUPPORTED_COMPRESSION.

import * as zlib from "node:zlib";
import { SluiceError } from "./errors.ts";
import { COMPRESSION, type CompressionName } from "./batch.ts";

const MIB = 1024 * 1024;

/**
 * The default limit on a batch's records once decompressed. Kafka's default batch limit is
 * 1 MiB, and real record data rarely compresses better than 10:1; 64 MiB leaves room for very
 * repetitive data while bounding what one batch can make the decoder allocate.
 */
export const DECOMPRESSED_BYTES_MAX = 64 * MIB;
/** The largest limit a caller may ask for: the most a single Uint8Array reliably holds. */
export const DECOMPRESSED_BYTES_MAX_LIMIT = 2 ** 31 - 1;

const NAMES: readonly (CompressionName | undefined)[] = [
  "none",
  "gzip",
  "snappy",
  "lz4",
  "zstd",
  undefined,
  undefined,
  undefined,
];

type Codec = {
  compress(bytes: Uint8Array, level: number | undefined): Uint8Array;
  decompress(bytes: Uint8Array, outputBytesMax: number): Uint8Array;
};

const gzip: Codec = {
  compress: (bytes, level) => zlib.gzipSync(bytes, level === undefined ? {} : { level }),
  decompress: (bytes, outputBytesMax) =>
    zlib.gunzipSync(bytes, { maxOutputLength: outputBytesMax }),
};

// Older runtimes lack zstd in node:zlib: the namespace import lets the module load there and
// report zstd as unsupported instead of failing to link.
const zstd: Codec | undefined =
  typeof zlib.zstdCompressSync === "function" && typeof zlib.zstdDecompressSync === "function"
    ? {
        compress: (bytes, level) =>
          zlib.zstdCompressSync(
            bytes,
            level === undefined
              ? {}
              : { params: { [zlib.constants.ZSTD_c_compressionLevel]: level } },
          ),
        decompress: (bytes, outputBytesMax) =>
          zlib.zstdDecompressSync(bytes, { maxOutputLength: outputBytesMax }),
      }
    : undefined;

/** The codec name for a compression attribute value (0-7), or undefined for 5-7. */
export function compressionName(attributes: number): CompressionName | undefined {
  return NAMES[attributes & 0x07];
}

/** True when this runtime can compress and decompress with `name`. */
export function isCompressionAvailable(name: CompressionName): boolean {
  return name === "none" || codecFor(name, false) !== undefined;
}

function codecFor(name: CompressionName, required: boolean): Codec | undefined {
  let codec: Codec | undefined;
  if (name === "gzip") codec = gzip;
  if (name === "zstd") codec = zstd;
  if (codec === undefined && required) {
    const why = name === "zstd" ? "this runtime's node:zlib has no zstd" : "no codec is built in";
    throw new SluiceError(
      "UNSUPPORTED_COMPRESSION",
      `Compression ${name} (id ${COMPRESSION[name]}) is not supported: ${why}`,
      { compression: name },
    );
  }
  return codec;
}

/** Compresses a batch's records section. `level` is the codec's own scale (gzip 1-9). */
export function compressRecords(
  name: CompressionName,
  bytes: Uint8Array,
  options: { level?: number } = {},
): Uint8Array {
  if (!Object.hasOwn(COMPRESSION, name)) throw new TypeError(`Unknown compression ${String(name)}`);
  if (name === "none") return bytes;
  return asPlainView(codecFor(name, true)!.compress(bytes, options.level));
}

/**
 * Decompresses a batch's records section. Throws SluiceError BATCH_TOO_LARGE when the output
 * would pass `decompressedBytesMax`, INVALID_BATCH when the bytes are not a valid stream, and
 * UNSUPPORTED_COMPRESSION for a codec this runtime lacks. The result is a plain Uint8Array.
 */
export function decompressRecords(
  name: CompressionName,
  bytes: Uint8Array,
  options: { decompressedBytesMax?: number } = {},
): Uint8Array {
  const outputBytesMax = options.decompressedBytesMax ?? DECOMPRESSED_BYTES_MAX;
  checkLimit(outputBytesMax);
  if (!Object.hasOwn(COMPRESSION, name)) throw new TypeError(`Unknown compression ${String(name)}`);
  if (name === "none") return bytes;
  const codec = codecFor(name, true)!;
  let output: Uint8Array;
  try {
    output = codec.decompress(bytes, outputBytesMax);
  } catch (error) {
    throw decompressError(name, bytes, outputBytesMax, error);
  }
  // Some implementations return one byte past the limit instead of throwing; hold the line.
  if (output.length > outputBytesMax) throw tooLarge(name, bytes, outputBytesMax);
  return asPlainView(output);
}

function checkLimit(outputBytesMax: number): void {
  const valid = Number.isInteger(outputBytesMax) && outputBytesMax >= 1;
  if (!valid || outputBytesMax > DECOMPRESSED_BYTES_MAX_LIMIT) {
    throw new RangeError(
      `decompressedBytesMax ${outputBytesMax} is not an integer in ` +
        `[1, ${DECOMPRESSED_BYTES_MAX_LIMIT}]`,
    );
  }
}

function tooLarge(name: CompressionName, bytes: Uint8Array, outputBytesMax: number): SluiceError {
  return new SluiceError(
    "BATCH_TOO_LARGE",
    `${name} records of ${bytes.length} bytes decompress to more than ` +
      `decompressedBytesMax ${outputBytesMax}`,
    { compression: name, compressedBytes: bytes.length, decompressedBytesMax: outputBytesMax },
  );
}

function decompressError(
  name: CompressionName,
  bytes: Uint8Array,
  outputBytesMax: number,
  error: unknown,
): SluiceError {
  const errno = (error as { code?: unknown } | null)?.code;
  if (errno === "ERR_BUFFER_TOO_LARGE") return tooLarge(name, bytes, outputBytesMax);
  const reason = error instanceof Error ? error.message : String(error);
  return new SluiceError(
    "INVALID_BATCH",
    `${name} records of ${bytes.length} bytes cannot be decompressed: ${reason}`,
    { compression: name, compressedBytes: bytes.length },
    { cause: error },
  );
}

/**
 * A Buffer seen as a plain Uint8Array over the same memory, so decoded keys and values have
 * one type whatever the runtime's zlib returns (Buffer's `slice` shares memory, unlike
 * Uint8Array's, and deep equality tells the two apart).
 */
function asPlainView(bytes: Uint8Array): Uint8Array {
  if (Object.getPrototypeOf(bytes) === Uint8Array.prototype) return bytes;
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
