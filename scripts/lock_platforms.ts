// Completes package-lock.json with the per-platform optional binaries (Biome, Deno, Bun,
// native addons) that the registry this lockfile was made against did not serve. npm records
// an entry only for packages it could resolve, and `npm ci` rejects a lockfile that misses any
// optional dependency. Each added entry carries the `os`/`cpu`/`libc` its name states, so npm
// skips it on other platforms exactly as it does for a lockfile made against the full registry.
// Run after any `npm install` that changes the lockfile: `bun scripts/lock_platforms.ts`.

import { readFileSync, writeFileSync } from "node:fs";

type LockEntry = {
  version?: string;
  dev?: boolean;
  optional?: boolean;
  optionalDependencies?: Record<string, string>;
  os?: string[];
  cpu?: string[];
  libc?: string[];
};

const OS_WORDS = ["darwin", "linux", "win32", "android", "freebsd", "openbsd", "sunos", "aix"];
const CPU_WORDS = ["arm64", "x64", "ia32", "arm", "s390x", "ppc64", "riscv64", "loong64"];

function platformOf(name: string): Pick<LockEntry, "os" | "cpu" | "libc"> {
  const aliases: Record<string, string> = { windows: "win32", aarch64: "arm64" };
  const words = name
    .replace(/^@[^/]+\//, "")
    .split(/[-_]/)
    .map((word) => aliases[word] ?? word);
  const os = words.find((word) => OS_WORDS.includes(word));
  const cpu = words.find((word) => CPU_WORDS.includes(word));
  const platform: Pick<LockEntry, "os" | "cpu" | "libc"> = {};
  if (os !== undefined) platform.os = [os];
  if (cpu !== undefined) platform.cpu = [cpu];
  if (os === "linux") platform.libc = [words.includes("musl") ? "musl" : "glibc"];
  return platform;
}

const path = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(path, "utf8")) as { packages: Record<string, LockEntry> };
let added = 0;
for (const [, entry] of Object.entries(lock.packages)) {
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const key = `node_modules/${name}`;
    if (lock.packages[key] !== undefined) continue;
    const platform = platformOf(name);
    if (platform.os === undefined) continue;
    lock.packages[key] = { version, dev: entry.dev, optional: true, ...platform };
    added++;
  }
}
writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`lock_platforms: added ${added} platform entries`);
