// The frame fuzzer (scripts/fuzz/): seeded cases of request frames for every API, valid and
// damaged, sent to a server this script starts on port 0. Prints frames per second and every
// failure (a hang, a broken invariant, an internal error, a crash); failing cases are saved as
// JSON under test/protocol/fuzz_cases/, where a test replays them.
//
//   npm run fuzz -- --frames N [--seed S] [--workers W] [--save DIR | --no-save]
//
// The same seed gives the same cases on Bun and on Deno (`deno run -A scripts/fuzz.ts ...`).
// Exit code: 0 with no failure, 1 with any, 2 on a usage error.

import { join } from "node:path";
import { parseArgs } from "node:util";
import { replay, runFuzz } from "./fuzz/run.ts";

const DEFAULT_SAVE_DIR = join(import.meta.dirname, "..", "test", "protocol", "fuzz_cases");

function positive(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isSafeInteger(number) || number < 0) {
    console.error(`fuzz: --${name} ${value} is not a non-negative integer`);
    process.exit(2);
  }
  return number;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      frames: { type: "string" },
      seed: { type: "string" },
      workers: { type: "string" },
      save: { type: "string" },
      "no-save": { type: "boolean" },
    },
  });
  const frames = positive("frames", values.frames, 20_000);
  const seed = positive("seed", values.seed, Date.now() % 1_000_000);
  const workers = Math.max(1, positive("workers", values.workers, 8));
  const saveDir = values["no-save"] === true ? undefined : (values.save ?? DEFAULT_SAVE_DIR);
  console.log(`fuzz: ${frames} frames, seed ${seed}, ${workers} workers`);
  const report = await runFuzz({ frames, seed, workers, ...(saveDir ? { saveDir } : {}) });
  const { answered, closed, cut } = report.outcomes;
  console.log(
    `fuzz: ${report.frames} frames in ${report.cases} cases, ` +
      `${(report.elapsedMs / 1000).toFixed(2)} s, ${Math.round(report.framesPerSecond)} frames/s ` +
      `(probe answered ${answered}, closed by the server ${closed}, cut mid-frame ${cut})`,
  );
  for (const failure of report.failures) {
    console.log(`fuzz: FAILURE ${failure.kind}: ${failure.detail}`);
    for (const fuzzCase of failure.cases) {
      console.log(`  case ${fuzzCase.index} (seed ${fuzzCase.seed}): ${fuzzCase.notes.join("; ")}`);
      const again = await replay(fuzzCase);
      console.log(`  replayed alone: ${again === undefined ? "passes" : again.kind}`);
    }
  }
  for (const path of report.saved) console.log(`fuzz: saved ${path}`);
  if (report.failures.length === 0) console.log("fuzz: no failure");
  return report.failures.length === 0 ? 0 : 1;
}

process.exit(await main());
