// `npm run build` (and `prepack`): dist/, the JavaScript and declarations that Node and Deno
// load from the installed package (tsconfig.build.json says why and how). After tsc it
//
//   - replaces dist/package.json, tsc's copy of package.json (protocol/server/server.ts imports
//     it for the version it reports), with just the version and "type": "module": a full copy
//     would be a second package named sluice, with exports that mean nothing inside dist/;
//   - checks that every JavaScript and declaration file package.json's exports name exists.
//
// It prints nothing when all is well (`npm pack --json` passes a prepack script's stdout on).

import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

type Conditions = Record<string, string>;

const root = join(import.meta.dirname, "..");
const dist = join(root, "dist");
const packageJson = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  version: string;
  exports: Record<string, Conditions | string>;
};

rmSync(dist, { recursive: true, force: true });
const tsc = join(root, "node_modules", ".bin", "tsc");
const compiled = spawnSync(tsc, ["-p", join(root, "tsconfig.build.json")], { stdio: "inherit" });
if (compiled.status !== 0) {
  console.error(`build: tsc failed (exit ${compiled.status ?? compiled.signal})`);
  process.exit(1);
}

const slim = { version: packageJson.version, type: "module" };
writeFileSync(join(dist, "package.json"), `${JSON.stringify(slim, null, 2)}\n`);

const missing: string[] = [];
for (const [entry, target] of Object.entries(packageJson.exports)) {
  if (typeof target === "string") continue;
  for (const [condition, path] of Object.entries(target)) {
    if (path.startsWith("./dist/") && !existsSync(join(root, path))) {
      missing.push(`${entry} (${condition}): ${path}`);
    }
  }
}
if (missing.length > 0) {
  console.error(`build: package.json exports files tsc did not make:\n  ${missing.join("\n  ")}`);
  process.exit(1);
}
