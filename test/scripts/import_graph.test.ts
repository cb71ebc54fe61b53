import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { formatReport, importGraph, importSpecifiers } from "../../scripts/import_graph.ts";
import { PROJECT_ROOT, runScript, tempDir } from "../helpers.ts";

/** Writes `files` (relative path → source) under `root`. */
function writeTree(root: string, files: Record<string, string>): void {
  for (const [path, source] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), source);
  }
}

describe("import graph", () => {
  test("the repository has no import circle and no layering violation", () => {
    const report = importGraph(PROJECT_ROOT);
    assert.deepEqual(report.cycles, [], formatReport(report));
    assert.deepEqual(report.violations, [], formatReport(report));
    assert.deepEqual(report.unresolved, [], formatReport(report));
    assert.ok(report.edges.length > 100, `only ${report.edges.length} imports found`);
  });

  test("the command exits 0 on the repository and prints the folder counts", () => {
    const run = runScript("scripts/import_graph.ts", []);
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /imports between folders/);
    assert.match(run.stdout, /protocol\/server -> protocol\/codec: \d+/);
    assert.match(run.stdout, /import circles: none/);
    assert.match(run.stdout, /layering violations: none/);
  });

  test("finds static, re-export, side-effect and dynamic imports, not those in strings", () => {
    const source = [
      'import type { A } from "./a.ts";',
      "import {",
      "  b,",
      '  c } from "../b.ts";',
      'export * from "./c.ts";',
      'export { d as e } from "./d.ts";',
      'import "./e.ts";',
      'const f = await import("./f.ts");',
      '// import { g } from "./g.ts";',
      'const h = `import { h } from "./h.ts"`;',
      "const i = 'import(\"./i.ts\")';",
      'import * as j from "node:fs";',
    ].join("\n");
    assert.deepEqual(importSpecifiers(source), [
      { specifier: "./a.ts", line: 1 },
      { specifier: "../b.ts", line: 4 },
      { specifier: "./c.ts", line: 5 },
      { specifier: "./d.ts", line: 6 },
      { specifier: "./e.ts", line: 7 },
      { specifier: "./f.ts", line: 8 },
      { specifier: "node:fs", line: 12 },
    ]);
  });

  test("a circle and a layering violation in a small tree fail the command", () => {
    using dir = tempDir("sluice-import-graph-");
    writeTree(dir.path, {
      "record/mod.ts": 'export { y } from "./y.ts";\nexport const x = 1;\n',
      "record/y.ts": 'import { x } from "./mod.ts";\nexport const y = x + 1;\n',
      "engine/mod.ts": 'export { y } from "../record/mod.ts";\n',
      "protocol/client/mod.ts": 'export const z = (await import("../../engine/mod.ts")).y;\n',
    });
    const report = importGraph(dir.path);
    assert.deepEqual(report.cycles, [["record/mod.ts", "record/y.ts", "record/mod.ts"]]);
    assert.deepEqual(
      report.violations.map((v) => [v.edge.from, v.edge.to, v.rule.why]),
      [["protocol/client/mod.ts", "engine/mod.ts", "the client never depends on the engine"]],
    );
    const run = runScript("scripts/import_graph.ts", [dir.path]);
    assert.equal(run.status, 1);
    assert.match(run.stdout, /circle: record\/mod\.ts -> record\/y\.ts -> record\/mod\.ts/);
    assert.match(
      run.stdout,
      /layering violation: protocol\/client\/mod\.ts:1 imports engine\/mod\.ts/,
    );
    assert.match(run.stderr, /1 circle\(s\), 1 layering violation\(s\)/);
  });

  test("the engine importing the protocol and record importing the engine are violations", () => {
    using dir = tempDir("sluice-import-graph-");
    writeTree(dir.path, {
      "engine/a.ts": 'import "../protocol/server/mod.ts";\n',
      "protocol/server/mod.ts": 'import "../../engine/b.ts";\n',
      "engine/b.ts": "export {};\n",
      "record/c.ts": 'import type { B } from "../engine/b.ts";\n',
    });
    const report = importGraph(dir.path);
    assert.deepEqual(report.cycles, []);
    assert.deepEqual(
      report.violations.map((v) => `${v.edge.from} -> ${v.edge.to}: ${v.rule.why}`).sort(),
      [
        "engine/a.ts -> protocol/server/mod.ts: the engine knows nothing of the wire",
        "protocol/server/mod.ts -> engine/b.ts: the protocol uses the engine only through " +
          "engine/mod.ts",
        "record/c.ts -> engine/b.ts: record/ is below the engine",
      ],
    );
  });
});
