// Whether bench:tcp's latency stalls line up with JavaScriptCore's optimizing compiles: runs
// bench:tcp (its --phases, default latency alone) with every DFG and FTL compile reported by
// the broker and the client (BUN_JSC_reportDFGCompileTimes / reportFTLCompileTimes), stamps each
// report as its line arrives, and takes the slow records from bench:tcp's --slow-log. Slow
// records less than STALL_GAP_MS apart form one stall; a stall counts as "in a compile" when the
// send time of its first record falls inside a compile's interval (widened by COMPILE_PAD_MS).
// Per latency run it prints the compiles, their summed milliseconds, the share of the measured
// time inside a compile, the stalls and how many began inside one: a share of stalls well above
// the share of time says the compiles (their threads competing for the cores) cause them.
// Bun only; prints one JSON line.
//
//   bun bench/tools/jit_stalls.ts [--phases latency] [--latency-seconds 10] [--slow-ms 2]

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const ROOT = join(import.meta.dirname, "..", "..");
/** Slow records closer than this (ms) belong to one stall. */
const STALL_GAP_MS = 15;
/** A compile's interval is widened by this (ms) on each side: report lines arrive late. */
const COMPILE_PAD_MS = 3;

const { values } = parseArgs({
  options: {
    phases: { type: "string", default: "latency" },
    "latency-seconds": { type: "string", default: "10" },
    "slow-ms": { type: "string", default: "2" },
  },
});

interface Compile {
  startMs: number;
  endMs: number;
  tier: "DFG" | "FTL";
}

/** "Optimized f#…using FTL with FTL into 224 bytes in 0.666 ms (DFG: …)" → its milliseconds. */
function compileOf(line: string, endMs: number): Compile | undefined {
  if (!line.startsWith("Optimized ")) return;
  const tier = line.includes("using FTL") ? "FTL" : line.includes("using DFG") ? "DFG" : undefined;
  const took = /in ([\d.]+) ms/.exec(line);
  if (tier === undefined || took === null) return;
  return { startMs: endMs - Number(took[1]), endMs, tier };
}

async function runBench(slowLog: string): Promise<Compile[]> {
  const env = {
    ...process.env,
    BUN_JSC_reportDFGCompileTimes: "1",
    BUN_JSC_reportFTLCompileTimes: "1",
  };
  const args = [join(ROOT, "bench/tcp.bench.ts"), "--json", "--phases", values.phases!];
  args.push("--latency-seconds", values["latency-seconds"]!, "--slow-ms", values["slow-ms"]!);
  args.push("--slow-log", slowLog);
  const child = spawn(process.execPath, args, { env, stdio: ["ignore", "ignore", "pipe"] });
  const compiles: Compile[] = [];
  let partial = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (text: string) => {
    const nowMs = performance.timeOrigin + performance.now();
    const lines = (partial + text).split("\n");
    partial = lines.pop()!;
    for (const line of lines) {
      const compile = compileOf(line, nowMs);
      if (compile !== undefined) compiles.push(compile);
    }
  });
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  if (code !== 0) throw new Error(`bench:tcp exited with ${code}`);
  return compiles;
}

interface Run {
  name: string;
  measureStartMs: number;
  /** Each slow record: its send time (ms, epoch) and when it arrived. */
  sends: number[];
}

function readSlowLog(path: string): Run[] {
  const runs: Run[] = [];
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const header = /^# (\S+) measuring from (\S+)$/.exec(line);
    if (header !== null) {
      runs.push({ name: header[1]!, measureStartMs: Date.parse(header[2]!), sends: [] });
      continue;
    }
    if (line === "" || line.startsWith("#")) continue;
    const [name, sinceMs, latencyMs] = line.split(" ");
    const run = runs.find((candidate) => candidate.name === name);
    if (run === undefined) throw new Error(`slow record of an unknown run: ${line}`);
    run.sends.push(run.measureStartMs + Number(sinceMs) - Number(latencyMs));
  }
  return runs;
}

function summary(run: Run, compiles: Compile[], seconds: number) {
  const endMs = run.measureStartMs + seconds * 1000;
  const inRun = compiles.filter((c) => c.endMs >= run.measureStartMs && c.endMs < endMs);
  // The compiles' padded intervals merged, so that overlapping ones count once.
  const spans: [number, number][] = [];
  for (const c of [...inRun].sort((a, b) => a.startMs - b.startMs)) {
    const last = spans.at(-1);
    const from = c.startMs - COMPILE_PAD_MS;
    const to = c.endMs + COMPILE_PAD_MS;
    if (last !== undefined && from <= last[1]) last[1] = Math.max(last[1], to);
    else spans.push([from, to]);
  }
  const coveredMs = spans.reduce((sum, [from, to]) => sum + to - from, 0);
  const sends = [...run.sends].sort((a, b) => a - b);
  let stalls = 0;
  let stallsInCompile = 0;
  for (let i = 0; i < sends.length; i++) {
    if (i > 0 && sends[i]! - sends[i - 1]! < STALL_GAP_MS) continue;
    stalls++;
    if (spans.some(([from, to]) => from <= sends[i]! && sends[i]! <= to)) stallsInCompile++;
  }
  return {
    run: run.name,
    compilesDfg: inRun.filter((c) => c.tier === "DFG").length,
    compilesFtl: inRun.filter((c) => c.tier === "FTL").length,
    compileMs: Math.round(inRun.reduce((sum, c) => sum + c.endMs - c.startMs, 0)),
    timeInCompilePct: Math.round((coveredMs / (seconds * 10)) * 10) / 10,
    slowRecords: sends.length,
    stalls,
    stallsInCompilePct: stalls === 0 ? null : Math.round((stallsInCompile / stalls) * 1000) / 10,
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-jit-stalls-"));
  try {
    const slowLog = join(dir, "slow.log");
    const compiles = await runBench(slowLog);
    const seconds = Number(values["latency-seconds"]);
    const runs = readSlowLog(slowLog).map((run) => summary(run, compiles, seconds));
    console.log(JSON.stringify({ phases: values.phases, slowMs: Number(values["slow-ms"]), runs }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
