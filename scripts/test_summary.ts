// Reads the output of `npm test` and prints one line, `N passed, N failed, N skipped`, counting
// every test case under both runtimes: Bun's summary (`N pass`, `N fail`, `N skip`) and Deno's
// TAP stream (leaf `ok` / `not ok` lines; a parent's result line follows its `1..N` plan and is
// not counted again). A step that failed before any test ran (type-check, lint) counts as one
// failure so the line never reads "0 failed" for a red run.

import { readFileSync } from "node:fs";

export type Summary = { passed: number; failed: number; skipped: number };

function bunCounts(log: string): Summary {
  const count = (word: string) => {
    const match = new RegExp(`^\\s*(\\d+) ${word}$`, "m").exec(log);
    return match === null ? 0 : Number(match[1]);
  };
  return { passed: count("pass"), failed: count("fail"), skipped: count("skip") };
}

function tapCounts(log: string): Summary {
  const summary: Summary = { passed: 0, failed: 0, skipped: 0 };
  let previous = "";
  for (const line of log.split("\n")) {
    const result = /^\s*(not ok|ok) \d+( - .*)?$/.exec(line);
    const isParent = /^\s+1\.\.\d+$/.test(previous);
    if (line.trim() !== "") previous = line;
    if (result === null || isParent) continue;
    if (/# SKIP/i.test(line)) summary.skipped++;
    else if (result[1] === "ok") summary.passed++;
    else summary.failed++;
  }
  return summary;
}

export function summarize(log: string, exitCode: number): Summary {
  const bun = bunCounts(log);
  const deno = tapCounts(log);
  const summary = {
    passed: bun.passed + deno.passed,
    failed: bun.failed + deno.failed,
    skipped: bun.skipped + deno.skipped,
  };
  if (exitCode !== 0 && summary.failed === 0) summary.failed = 1;
  return summary;
}

if (import.meta.main) {
  const [logPath, exitCode] = process.argv.slice(2);
  if (logPath === undefined) throw new TypeError("usage: test_summary.ts LOG EXIT_CODE");
  const summary = summarize(readFileSync(logPath, "utf8"), Number(exitCode ?? 0));
  console.log(`${summary.passed} passed, ${summary.failed} failed, ${summary.skipped} skipped`);
}
