// CRC-32C (Castagnoli), the checksum of RecordBatch v2 and of sluice's own CRC-framed files.
// Every produced byte is hashed twice (the client stamps each batch, the broker checks it on
// append), so its speed is a share of the publish path's CPU on both sides.
//
// Three implementations, the first that loads wins:
//   "hardware"  Bun on x86-64 with SSE 4.2: _crc32c_x86_64.c, compiled at load by Bun's
//               built-in C compiler (`cc` of `bun:ffi`), three CRCs side by side: ~23 GB/s on
//               300 KiB batches here, against ~4.6 GB/s for the addon below.
//   "native"    the Node-API addon `@node-rs/crc32`: one CRC at a time, ~4.6 GB/s. Deno loads
//               such addons only with `--allow-ffi`, and a platform without a prebuilt binary
//               has none at all.
//   "portable"  the table-driven JavaScript below, ~1 GB/s.
// Each is loaded once, at module load, and checked against known values and against the
// portable version before it is used; whatever cannot be loaded (no compiler, no SSE 4.2, no
// permission, no binary) falls through to the next: same results, slower.
// `CRC32C_IMPLEMENTATION` says which one is in use.

import { fileURLToPath } from "node:url";

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

/**
 * The check input's length: one 3-block stride of the hardware version plus a tail of words
 * and bytes, so each of its paths runs once (see crc32cAgrees).
 */
const CHECK_BYTES = 3 * 4096 + 13;

/** True when `candidate` gives the portable results, whole and continued, at odd offsets. */
function crc32cAgrees(candidate: Crc32c): boolean {
  const bytes = new Uint8Array(CHECK_BYTES);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 167 + 13) >>> 3;
  if (candidate(new TextEncoder().encode("123456789")) >>> 0 !== 0xe3069283) return false;
  for (const [from, to] of [
    [0, CHECK_BYTES],
    [1, CHECK_BYTES - 3],
    [5, 12_300],
    [3, 10],
  ] as const) {
    const part = bytes.subarray(from, to);
    const expected = crc32cPortable(part);
    if (candidate(part) >>> 0 !== expected) return false;
    const head = crc32cPortable(part.subarray(0, 7));
    if (candidate(part.subarray(7), head) >>> 0 !== expected) return false;
  }
  return true;
}

type BunFfi = {
  cc(options: { source: string; symbols: Record<string, { args: string[]; returns: string }> }): {
    symbols: Record<string, (...args: unknown[]) => number>;
  };
};

/** The SSE 4.2 version (see the top of this file), where Bun can compile it and it may run. */
async function loadHardware(): Promise<Crc32c | undefined> {
  const isBun = (globalThis as { Bun?: unknown }).Bun !== undefined;
  if (!isBun || process.arch !== "x64") return undefined;
  try {
    const ffiModule = "bun:ffi";
    const { cc } = (await import(ffiModule)) as BunFfi;
    const source = fileURLToPath(new URL("./_crc32c_x86_64.c", import.meta.url));
    const { symbols } = cc({
      source,
      symbols: {
        sluice_crc32c_supported: { args: [], returns: "i32" },
        sluice_crc32c_init: { args: [], returns: "void" },
        // The CRC to continue goes as i32: Bun 1.4 passed a u32 argument of 2^31 or more wrongly
        // (crc32cAgrees caught it); the C side reads the same 32 bits either way.
        sluice_crc32c: { args: ["ptr", "u64", "i32"], returns: "u32" },
      },
    });
    // Without SSE 4.2 the instruction does not exist: never call into it then.
    if (symbols.sluice_crc32c_supported!() !== 1) return undefined;
    symbols.sluice_crc32c_init!();
    const hashed = symbols.sluice_crc32c!;
    const hardware: Crc32c = (bytes, initial = 0) =>
      // An empty array may have no memory behind it to point at.
      bytes.length === 0 ? initial >>> 0 : hashed(bytes, bytes.length, initial | 0) >>> 0;
    return crc32cAgrees(hardware) ? hardware : undefined;
  } catch {
    // No `cc` in this Bun build, no C source beside this module (a bundled copy), or a
    // compiler error: the addon or the portable version takes over.
    return undefined;
  }
}

async function loadNative(): Promise<Crc32c | undefined> {
  try {
    const native = await import("@node-rs/crc32");
    // Known values prove the binding loaded and computes CRC-32C, not some other CRC.
    if (crc32cAgrees(native.crc32c)) return native.crc32c;
  } catch {
    // No permission to load a native addon (Deno without --allow-ffi) or no binary for this
    // platform: the portable implementation below takes over.
  }
  return undefined;
}

const hardware = await loadHardware();
const native = hardware === undefined ? await loadNative() : undefined;

/** The CRC-32C in use (see the top of this file). Returns an unsigned u32. */
export const crc32c: Crc32c = hardware ?? native ?? crc32cPortable;

/** Which CRC-32C implementation this process uses. */
export const CRC32C_IMPLEMENTATION: "hardware" | "native" | "portable" =
  hardware !== undefined ? "hardware" : native !== undefined ? "native" : "portable";
