// The writer that crash.test.ts kills. It opens a PartitionLog, appends numbered batches with
// several appends in flight, and prints one line per acknowledged append as soon as it
// resolves, so that the parent knows exactly what the log promised before the SIGKILL.
//
//   argv: <dir> <first sequence number> <fsync: always | never> [direct]
//         (direct: segments written with O_DIRECT, engine/direct_io.ts; the child fails if
//         the runtime or file system cannot)
//   stdout: "open <logEndOffset>" once opened, then "<baseOffset> <lastOffset> <seq>" per ack
//   stdin:  a pipe from the parent; when it closes (the parent died) the child exits
//
// The batch for a sequence number is a pure function of it (crashBatch), so the parent can
// check every byte of every batch it finds, acknowledged or not.

import { loadDirectWrites } from "../../engine/direct_io.ts";
import { encodeRecordBatch, PartitionLog } from "../../engine/mod.ts";

/** Small segments, so that rolls happen while batches are in flight. */
export const CRASH_SEGMENT_BYTES = 256 * 1024;
export const CRASH_INDEX_INTERVAL_BYTES = 4096;
const APPENDS_IN_FLIGHT = 8;
/** A child left running by a parent that died stops by itself after this many appends. */
const APPENDS_MAX = 200_000;
const BASE_TIMESTAMP_MS = 1_700_000_000_000;

const encoder = new TextEncoder();

/** The batch numbered `seq`: 1 to 4 records of 60 to 460 bytes, every byte set by `seq`. */
export function crashBatch(seq: number): Uint8Array {
  const recordCount = 1 + (seq % 4);
  const padBytes = 60 + ((seq * 37) % 400);
  const records = [];
  for (let i = 0; i < recordCount; i++) {
    const text = `${seq}:${i}:`.padEnd(padBytes, String.fromCharCode(97 + ((seq + i) % 26)));
    records.push({ value: encoder.encode(text), timestamp: BASE_TIMESTAMP_MS + seq });
  }
  return encodeRecordBatch(records, { timestamp: BASE_TIMESTAMP_MS + seq });
}

/** The sequence number a batch's first record value starts with. */
export function seqOfValue(value: Uint8Array | null): number {
  if (value === null) return Number.NaN;
  const text = new TextDecoder().decode(value.subarray(0, 24));
  return Number(text.slice(0, text.indexOf(":")));
}

async function main(): Promise<void> {
  const [dir, firstSeqText, fsync, mode] = process.argv.slice(2);
  if (dir === undefined || firstSeqText === undefined) {
    throw new TypeError("usage: crash_child.ts <dir> <first seq> <always|never>");
  }
  if (fsync !== "always" && fsync !== "never") throw new TypeError(`fsync ${fsync}?`);
  const directWrites = mode === "direct" ? await loadDirectWrites(dir) : undefined;
  if (mode === "direct" && directWrites === undefined) throw new Error("no direct writes here");
  const log = await PartitionLog.open(
    dir,
    {
      fsync,
      segmentBytes: CRASH_SEGMENT_BYTES,
      indexIntervalBytes: CRASH_INDEX_INTERVAL_BYTES,
      // The batches carry 2023 timestamps: with the default segmentMs every reopened active
      // segment would roll at the first append, and no append would go on a recovered tail.
      ...(directWrites === undefined ? {} : { segmentMs: Number.MAX_SAFE_INTEGER }),
    },
    {
      onWarning: (message) => process.stderr.write(`warning: ${message}\n`),
      ...(directWrites === undefined ? {} : { directWrites }),
    },
  );
  process.stdout.write(`open ${log.logEndOffset}\n`);
  // A parent that died without killing us closes our stdin: do not write on forever.
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
  const firstSeq = Number(firstSeqText);
  let seq = firstSeq;
  const worker = async () => {
    while (seq - firstSeq < APPENDS_MAX) {
      const mine = seq++;
      const result = await log.append(crashBatch(mine));
      process.stdout.write(`${result.baseOffset} ${result.lastOffset} ${mine}\n`);
    }
  };
  const workers = [];
  for (let i = 0; i < APPENDS_IN_FLIGHT; i++) workers.push(worker());
  await Promise.all(workers);
  await log.close();
}

if (import.meta.main) {
  main().catch((error) => {
    process.stderr.write(`crash_child failed: ${error?.stack ?? error}\n`);
    process.exit(1);
  });
}
