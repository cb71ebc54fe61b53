// CRC-32C (Castagnoli), the checksum of RecordBatch v2 and of sluice's own CRC-framed files.
//
// The native `@node-rs/crc32` (SSE 4.2 / ARM CRC instructions) runs at ~6 GB/s under Bun; the
// table-driven JavaScript below at ~1 GB/s. The native one is a Node-API addon: Deno loads such
// addons only with `--allow-ffi`, and a platform without a prebuilt binary has none at all. So
// the addon is loaded once, at module load, and when it cannot be (no permission, no binary)
// this module falls back to the JavaScript version instead of failing: same results, slower.
// `CRC32C_IMPLEMENTATION` says which one is in use.

type Crc32c = (bytes: Uint8Array, initial?: number) => number;

/** Slicing-by-8 tables: TABLE[k * 256 + b] is the CRC of byte b followed by k zero bytes. */
const TABLE = new Uint32Array(8 * 256);
const POLYNOMIAL_REFLECTED = 0x82f63b78;
for (let byte = 0; byte < 256; byte++) {
  let crc = byte;
  for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ POLYNOMIAL_REFLECTED : crc >>> 1;
  TABLE[byte] = crc >>> 0;
}
for (let byte = 0; byte < 256; byte++) {
  for (let k = 1; k < 8; k++) {
    const previous = TABLE[(k - 1) * 256 + byte]!;
    TABLE[k * 256 + byte] = (TABLE[previous & 0xff]! ^ (previous >>> 8)) >>> 0;
  }
}

/** CRC-32C in JavaScript; `initial` continues an earlier CRC, as the native function does. */
export function crc32cPortable(bytes: Uint8Array, initial = 0): number {
  let crc = ~initial >>> 0;
  let i = 0;
  const end8 = bytes.length - (bytes.length % 8);
  const t = TABLE;
  for (; i < end8; i += 8) {
    const low =
      (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24)) ^ crc;
    crc =
      t[7 * 256 + (low & 0xff)]! ^
      t[6 * 256 + ((low >>> 8) & 0xff)]! ^
      t[5 * 256 + ((low >>> 16) & 0xff)]! ^
      t[4 * 256 + (low >>> 24)]! ^
      t[3 * 256 + bytes[i + 4]!]! ^
      t[2 * 256 + bytes[i + 5]!]! ^
      t[256 + bytes[i + 6]!]! ^
      t[bytes[i + 7]!]!;
  }
  for (; i < bytes.length; i++) crc = t[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}

async function loadNative(): Promise<Crc32c | undefined> {
  try {
    const native = await import("@node-rs/crc32");
    // One known value proves the binding loaded and computes CRC-32C, not some other CRC.
    if (native.crc32c(new TextEncoder().encode("123456789")) >>> 0 === 0xe3069283) {
      return native.crc32c;
    }
  } catch {
    // No permission to load a native addon (Deno without --allow-ffi) or no binary for this
    // platform: the portable implementation below takes over.
  }
  return undefined;
}

const native = await loadNative();

/** The CRC-32C in use: native when it loaded, portable otherwise. Returns an unsigned u32. */
export const crc32c: Crc32c = native ?? crc32cPortable;

/** Which CRC-32C implementation this process uses. */
export const CRC32C_IMPLEMENTATION: "native" | "portable" =
  native === undefined ? "portable" : "native";
