#!/usr/bin/env node
// The installed `sluice` command. The command itself is bin/sluice.ts and runs on Bun; npm links
// this JavaScript file instead because a package's bin must run whichever runtime starts it.
// Under Bun it imports bin/sluice.ts. Under Node (or Deno, which refuses TypeScript inside
// node_modules) it runs bin/sluice.ts with a `bun` executable: the first found in a
// node_modules/.bin from this package's folder upwards (the project's own Bun), else on PATH.
// With none it says so in one line and exits 1.

import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const EXIT_FAILURE = 1;
const BUN_MISSING =
  'sluice: this command runs on Bun ≥ 1.4 — install it with "npm install -g bun" ' +
  '(or run "bunx sluice")';

const here = dirname(fileURLToPath(import.meta.url));
const command = join(here, "sluice.ts");
const args = process.argv.slice(2);

if (globalThis.Bun !== undefined) {
  const { main } = await import("./sluice.ts");
  process.exitCode = await main(args);
} else {
  const bun = findBun();
  if (bun === undefined) {
    console.error(BUN_MISSING);
    process.exit(EXIT_FAILURE);
  }
  runUnder(bun);
}

function isExecutable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function findBun() {
  const names = process.platform === "win32" ? ["bun.exe"] : ["bun"];
  const candidates = [];
  // From <project>/node_modules/sluice/bin up to the root: <project>/node_modules/.bin is on it.
  for (let dir = dirname(here); ; dir = dirname(dir)) {
    candidates.push(join(dir, "node_modules", ".bin"));
    if (dirname(dir) === dir) break;
  }
  candidates.push(...(process.env.PATH ?? "").split(delimiter).filter((dir) => dir !== ""));
  for (const dir of candidates) {
    for (const name of names) {
      const path = join(dir, name);
      if (isExecutable(path)) return path;
    }
  }
  return undefined;
}

/** Runs the command under `bun`, passing signals on, and exits as it exits. */
function runUnder(bun) {
  const child = spawn(bun, [command, ...args], { stdio: "inherit" });
  // SIGTERM and SIGHUP are sent to a process (kill PID, a supervisor), so they are passed on.
  // SIGINT usually comes from the terminal, which sends it to the child too (same process
  // group); passing it on as well would be a second Ctrl-C, which stops `sluice serve` at once
  // instead of cleanly. So this process only outlives it and waits for the child.
  const forward = (signal) => child.kill(signal);
  const ignore = () => {};
  process.on("SIGTERM", forward);
  process.on("SIGHUP", forward);
  process.on("SIGINT", ignore);
  child.once("error", (error) => {
    console.error(`sluice: could not start ${bun}: ${error.message}`);
    process.exit(EXIT_FAILURE);
  });
  child.once("exit", (code, signal) => {
    if (signal === null) process.exit(code ?? EXIT_FAILURE);
    // Die of the same signal, so whoever started this process sees what the command saw.
    process.removeListener("SIGTERM", forward);
    process.removeListener("SIGHUP", forward);
    process.removeListener("SIGINT", ignore);
    process.kill(process.pid, signal);
  });
}
