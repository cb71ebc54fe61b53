import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  blankNonCode,
  FUNCTION_LINES_MAX,
  LINE_COLUMNS_MAX,
  tidyFile,
  tidyTree,
} from "../../scripts/tidy.ts";
import { PROJECT_ROOT } from "../helpers.ts";

function rules(path: string, source: string): string[] {
  return tidyFile(path, source).map((violation) => violation.rule);
}

function longFunction(lines: number): string {
  const body = Array.from({ length: lines - 2 }, (_, i) => `  total += ${i};`);
  return ["export function long(): number {", "  let total = 0;", ...body, "}"].join("\n");
}

describe("tidy", () => {
  test("the project tree itself is tidy", () => {
    assert.deepEqual(tidyTree(PROJECT_ROOT), []);
  });

  test("fails on a line over the column limit", () => {
    const source = `export const x = "${"a".repeat(LINE_COLUMNS_MAX)}";\n`;
    assert.deepEqual(rules("bench/x.ts", source), ["line-length"]);
  });

  test("fails on a long function in engine/ but not in bench/", () => {
    const source = longFunction(FUNCTION_LINES_MAX + 5);
    assert.deepEqual(rules("engine/x.ts", source), ["function-length"]);
    assert.deepEqual(rules("bench/x.ts", source), []);
  });

  test("counts long methods and arrow functions, not long if-blocks", () => {
    const body = Array.from({ length: FUNCTION_LINES_MAX }, () => "    n++;").join("\n");
    const method = `class A {\n  run(n: number): void {\n${body}\n  }\n}\n`;
    const arrow = `const f = (n: number) => {\n${body}\n};\n`;
    const block = `if (n > 0) {\n${body}\n}\n`;
    assert.deepEqual(rules("protocol/a.ts", method), ["function-length"]);
    assert.deepEqual(rules("protocol/b.ts", arrow), ["function-length"]);
    assert.deepEqual(rules("protocol/c.ts", block), []);
  });

  test("an opt-out comment with a reason lets a long function stand", () => {
    const optOut = "// tidy: allow-long-function a state machine reads best whole";
    const source = `${optOut}\n${longFunction(90)}`;
    assert.deepEqual(rules("engine/x.ts", source), []);
  });

  test("fails on any in exported signatures only", () => {
    assert.deepEqual(rules("engine/a.ts", "export function f(x: any): void {}\n"), [
      "exported-any",
    ]);
    assert.deepEqual(rules("engine/b.ts", "export type T = { value: any };\n"), ["exported-any"]);
    assert.deepEqual(rules("engine/c.ts", "export const g = (x: any) => x;\n"), ["exported-any"]);
    assert.deepEqual(rules("engine/d.ts", "function h(x: any): void {}\n"), []);
    assert.deepEqual(rules("engine/e.ts", 'export const s = "any value";\n'), []);
    const cls = "export class C {\n  #x: any;\n  get(y: any): void {}\n}\n";
    assert.deepEqual(rules("engine/f.ts", cls), ["exported-any"]);
  });

  test("fails on time-based waits in tests", () => {
    const sleep = "await new Promise((r) => setTimeout(r, 100));\n";
    assert.deepEqual(rules("test/x.test.ts", sleep), ["test-timeout"]);
    assert.deepEqual(rules("engine/x.ts", sleep), []);
    const allowed = `// tidy: allow-timeout poll interval\n${sleep}`;
    assert.deepEqual(rules("test/y.test.ts", allowed), []);
    assert.deepEqual(rules("test/z.test.ts", 'const s = "setTimeout";\n'), []);
  });

  test("blanks strings, templates, comments and regexes but keeps code and newlines", () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the source under test holds a template
    const source = 'const a = "{"; // }\nconst b = `x${a + "}"}y`; /* { */\nconst r = /\\{/;\n';
    const code = blankNonCode(source);
    assert.equal(code.split("\n").length, source.split("\n").length);
    assert.equal(code.replace(/[^{}]/g, ""), "{}");
    assert.match(code, /const b = ` \$\{a \+ " "\} `;/);
  });
});
