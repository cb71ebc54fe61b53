// sluice as its users get it: `npm pack` (which builds dist/ through `prepack`), the tarball
// installed with `npm install` in a fresh project outside the repository, and the examples
// copied out of the installed package and run there, each under the runtime it is for:
// embed.ts under Bun (the TypeScript sources) and Deno (dist/, without --allow-ffi), client.mjs
// under Node (dist/) against a `sluice serve` started from the repository. It also checks what
// the tarball holds, what the install pulls in, that every entry point loads under Node and
// type-checks from its declarations, and the installed `sluice` command.
//
// It needs node, npm and the npm registry (for sluice's dependencies), and skips, saying so,
// without node or npm.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { delimiter, join } from "node:path";
import { after, describe, test } from "node:test";
import packageJson from "../../package.json" with { type: "json" };
import { EMBED_OUTPUT } from "../examples/expected.ts";
import { PROJECT_ROOT, tempDir } from "../helpers.ts";
import { type Finished, run, start } from "../processes.ts";

const INSTALL_MS_MAX = 600_000;

const isDeno = (process.versions as Record<string, string | undefined>)["deno"] !== undefined;
const isBun = (process.versions as Record<string, string | undefined>)["bun"] !== undefined;
const node = spawnSync("node", ["-p", "process.execPath"], { encoding: "utf8" });
const npm = spawnSync("npm", ["--version"], { encoding: "utf8" });
const NODE = node.stdout?.trim() ?? "";
const skip = node.status !== 0 ? "no node on PATH" : npm.status !== 0 ? "no npm on PATH" : false;

/** The runtime running this test, or else the project's own copy from node_modules/.bin. */
function runtime(name: "bun" | "deno"): string {
  if ((name === "bun" && isBun) || (name === "deno" && isDeno)) return process.execPath;
  return join(PROJECT_ROOT, "node_modules", ".bin", name);
}

/**
 * The environment without npm's `npm_*` variables: under `npm test` they name this repository
 * (npm_config_local_prefix among them), and an `npm install` that inherited them would install
 * into the repository instead of the fresh project.
 */
function cleanEnv(path = process.env["PATH"] ?? ""): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.toLowerCase().startsWith("npm_")) env[key] = value;
  }
  env["PATH"] = path;
  return env;
}

function succeeded(result: Finished, what: string): string {
  assert.equal(result.status, 0, `${what} exited with ${result.status}:\n${result.stderr}`);
  return result.stdout;
}

type PackResult = {
  filename: string;
  size: number;
  unpackedSize: number;
  files: { path: string }[];
};

type Installed = { work: string; project: string; packed: PackResult };

let installing: Promise<Installed> | undefined;
const scratch: { dir?: ReturnType<typeof tempDir> } = {};

/**
 * Packs the tarball and installs it in a fresh project, once: every test waits for it, and the
 * first to run bears its time under its own timeout (a `before` hook would be held to the
 * runner's --timeout under Bun, whatever timeout it is given).
 */
function installed(): Promise<Installed> {
  installing ??= packAndInstall();
  return installing;
}

async function packAndInstall(): Promise<Installed> {
  scratch.dir = tempDir("sluice-pack-");
  const workPath = scratch.dir.path;
  const out = await run("npm", ["pack", "--json", "--pack-destination", workPath], {
    cwd: PROJECT_ROOT,
    env: cleanEnv(),
  });
  // npm passes the prepack script's stdout on before its JSON: read from the JSON's start.
  const stdout = succeeded(out, "npm pack");
  const packed = (JSON.parse(stdout.slice(stdout.search(/^\[$/m))) as PackResult[])[0]!;
  const project = join(workPath, "project");
  fs.mkdirSync(project);
  const manifest = { name: "sluice-user", private: true, type: "module" };
  fs.writeFileSync(join(project, "package.json"), JSON.stringify(manifest));
  const startMs = Date.now();
  const install = await run(
    "npm",
    ["install", "--no-audit", "--no-fund", join(workPath, packed.filename)],
    { cwd: project, env: cleanEnv() },
  );
  succeeded(install, "npm install of the tarball");
  const installMs = Date.now() - startMs;
  console.log(
    `sluice tarball: ${packed.size} bytes, ${packed.unpackedSize} unpacked, ` +
      `${packed.files.length} files; npm install took ${installMs} ms`,
  );
  for (const example of ["embed.ts", "client.mjs", "custom_broker.ts"]) {
    fs.copyFileSync(
      join(project, "node_modules", "sluice", "examples", example),
      join(project, example),
    );
  }
  return { work: workPath, project, packed };
}

describe("the packed tarball, installed in a fresh project", { skip }, () => {
  after(() => scratch.dir?.[Symbol.dispose]());

  test("holds the library, dist/, the command, LICENSE and the spec, and no tests", {
    timeout: INSTALL_MS_MAX,
  }, async () => {
    const { project, packed } = await installed();
    const paths = packed.files.map((file) => file.path);
    for (const path of [
      "LICENSE",
      "README.md",
      "package.json",
      "mod.ts",
      "protocol/PROTOCOL.md",
      "bin/sluice.mjs",
      "bin/sluice.ts",
      "dist/mod.js",
      "dist/mod.d.ts",
      "dist/engine/mod.js",
      "dist/protocol/client/mod.d.ts",
      "examples/embed.ts",
    ]) {
      assert.ok(paths.includes(path), `the tarball holds ${path}`);
    }
    const unwanted = /^(test|scripts|\.ci|bench\/reports|bench\/results|bench\/micro)\/|fixtures\//;
    assert.deepEqual(
      paths.filter((path) => unwanted.test(path) || path === "bench/RESULTS.md"),
      [],
    );
    const license = fs.readFileSync(join(project, "node_modules", "sluice", "LICENSE"), "utf8");
    assert.match(license, /Apache License\s+Version 2\.0/);
    // dist/package.json only gives the server its version and marks dist/ as ES modules.
    const distManifest = fs.readFileSync(
      join(project, "node_modules", "sluice", "dist", "package.json"),
    );
    assert.deepEqual(JSON.parse(distManifest.toString()), {
      version: packageJson.version,
      type: "module",
    });
  });

  test("installs sluice's runtime dependencies and none of its development ones", {
    timeout: INSTALL_MS_MAX,
  }, async () => {
    const { project } = await installed();
    const modules = join(project, "node_modules");
    for (const name of Object.keys(packageJson.dependencies)) {
      assert.ok(fs.existsSync(join(modules, name)), `${name} is installed`);
    }
    for (const name of Object.keys(packageJson.devDependencies)) {
      assert.ok(!fs.existsSync(join(modules, name)), `${name} is not installed`);
    }
  });

  test("examples/embed.ts runs under Bun", { timeout: INSTALL_MS_MAX }, async () => {
    const { project } = await installed();
    const result = await run(runtime("bun"), ["embed.ts"], { cwd: project });
    assert.equal(succeeded(result, "bun embed.ts"), EMBED_OUTPUT);
  });

  test("examples/embed.ts runs under Deno without --allow-ffi", {
    timeout: INSTALL_MS_MAX,
  }, async () => {
    const { project, work } = await installed();
    const data = join(work, "deno-data");
    fs.mkdirSync(data);
    const permissions = [
      `--allow-read=${data}`,
      `--allow-write=${data}`,
      // msgpackr reads this variable when it loads.
      "--allow-env=MSGPACKR_NATIVE_ACCELERATION_DISABLED",
      // Native addons (CRC-32C, msgpackr's extractor) fall back to JavaScript; never prompt.
      "--deny-ffi",
    ];
    const result = await run(runtime("deno"), ["run", ...permissions, "embed.ts", data], {
      cwd: project,
      env: { ...process.env, NO_COLOR: "1" },
    });
    assert.equal(succeeded(result, "deno run embed.ts"), EMBED_OUTPUT);
  });

  test("examples/client.mjs runs under Node against sluice serve", {
    timeout: INSTALL_MS_MAX,
  }, async () => {
    const { project, work } = await installed();
    const data = join(work, "broker-data");
    const serve = ["bin/sluice.ts", "serve", "--data", data, "--host", "127.0.0.1", "--port", "0"];
    await using broker = await start(runtime("bun"), serve, /sluice listening on ([\d.]+:\d+)/, {
      cwd: PROJECT_ROOT,
    });
    const result = await run(NODE, ["client.mjs", broker.ready[1]!], { cwd: project });
    assert.equal(succeeded(result, "node client.mjs"), "produced 1000 consumed 1000\n");
  });

  test("every entry point loads under Node", { timeout: INSTALL_MS_MAX }, async () => {
    const { project } = await installed();
    const probe = `
      const expected = {
        "sluice": ["Engine", "SluiceServer", "Producer", "encodeRecordBatch", "SluiceError"],
        "sluice/engine": ["Engine", "PartitionLog", "encodeRecordBatch", "SluiceError"],
        "sluice/client": ["Producer", "Consumer", "Admin"],
        "sluice/record": ["encodeRecordBatch", "crc32c", "SluiceError"],
        "sluice/protocol": ["SluiceServer", "Producer", "Consumer", "Admin"],
      };
      for (const [name, exports] of Object.entries(expected)) {
        const module = await import(name);
        const missing = exports.filter((key) => typeof module[key] !== "function");
        console.log(name + ": " + (missing.length === 0 ? "ok" : "missing " + missing));
      }`;
    const result = await run(NODE, ["--input-type=module", "-e", probe], { cwd: project });
    const lines = succeeded(result, "node").trim().split("\n");
    assert.deepEqual(lines, [
      "sluice: ok",
      "sluice/engine: ok",
      "sluice/client: ok",
      "sluice/record: ok",
      "sluice/protocol: ok",
    ]);
  });

  test("the engine runs under Node from the installed package", {
    timeout: INSTALL_MS_MAX,
  }, async () => {
    const { project, work } = await installed();
    const data = join(work, "node-engine-data");
    // Everything an embedder does, offsets and a reopen included, on the compiled JavaScript.
    const program = `
      import { Engine, encodeRecordBatch, decodeRecordBatches } from "sluice/engine";
      const dir = process.argv[1];
      let engine = await Engine.open(dir, { onWarning: () => {} });
      await engine.createTopic("t", { partitions: 1, config: { fsync: "always" } });
      const text = new TextEncoder();
      const batch = encodeRecordBatch(["a", "b"].map((v) => ({ value: text.encode(v) })));
      const appended = await engine.append("t", 0, batch);
      await engine.offsets.commit("g", [{ topic: "t", partition: 0, offset: 2 }]);
      await engine.close();
      engine = await Engine.open(dir, { onWarning: () => {} });
      const values = [];
      for (const view of engine.read("t", 0, 0, 1 << 20).views) {
        for (const b of decodeRecordBatches(view)) {
          for (const r of b.records) values.push(new TextDecoder().decode(r.value));
        }
      }
      const committed = engine.offsets.fetch("g", "t", 0);
      await engine.close();
      console.log(appended.lastOffset, values.join(","), committed?.offset);`;
    const result = await run(NODE, ["--input-type=module", "-e", program, data], { cwd: project });
    assert.equal(succeeded(result, "node engine"), "1 a,b 2\n");
  });

  test("the examples type-check against the installed declarations", {
    timeout: INSTALL_MS_MAX,
  }, async () => {
    const { project } = await installed();
    // A strict consumer project: NodeNext resolution takes each export's `types` condition.
    const tsconfig = {
      compilerOptions: {
        module: "nodenext",
        target: "es2022",
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        typeRoots: [join(PROJECT_ROOT, "node_modules", "@types")],
        types: ["node"],
      },
      files: ["embed.ts", "custom_broker.ts"],
    };
    fs.writeFileSync(join(project, "tsconfig.json"), JSON.stringify(tsconfig));
    const tsc = join(PROJECT_ROOT, "node_modules", ".bin", "tsc");
    succeeded(await run(tsc, ["-p", "."], { cwd: project }), "tsc");
  });

  test("the installed sluice command runs with a Bun and names Bun without one", {
    timeout: INSTALL_MS_MAX,
  }, async () => {
    const { project, work } = await installed();
    const command = join(project, "node_modules", ".bin", "sluice");
    const withBun = cleanEnv(
      [join(PROJECT_ROOT, "node_modules", ".bin"), process.env["PATH"]].join(delimiter),
    );
    const version = await run(NODE, [command, "version"], { cwd: project, env: withBun });
    assert.match(
      succeeded(version, "sluice version"),
      new RegExp(`^sluice ${packageJson.version} \\(bun `),
    );
    const emptyDir = join(work, "empty-path");
    fs.mkdirSync(emptyDir, { recursive: true });
    const missing = await run(NODE, [command, "version"], {
      cwd: project,
      env: cleanEnv(emptyDir),
    });
    assert.equal(missing.status, 1);
    assert.match(
      missing.stderr,
      /^sluice: this command runs on Bun ≥ 1\.4 — install it with .*\n$/,
    );
  });
});
