// tidy: the house rules a formatter and a type-checker do not hold, checked on every `npm test`.
//
//   - no source line over 100 columns;
//   - no function over 70 lines in record/, engine/ and protocol/ (hot code must stay readable);
//   - no `any` in an exported signature (callers must see real types);
//   - no time-based waits (`setTimeout`, sleeps) in tests: tests wait on conditions.
//
// A line may opt out of one rule with a comment that says why, on it or on the line above:
// `// tidy: allow-long-function <why>` or `// tidy: allow-timeout <why>`.
//
// The checks run on a copy of the source whose strings, template text, comments and regular
// expressions are blanked to spaces (newlines kept), so braces and words inside them never count.

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";

export const LINE_COLUMNS_MAX = 100;
export const FUNCTION_LINES_MAX = 70;
const SOURCE_DIRS = ["record", "engine", "protocol", "bench", "bin", "examples", "test", "scripts"];
const SOURCE_EXTENSIONS = [".ts", ".js", ".mjs", ".cjs", ".sh"];
const SKIP_DIRS = new Set(["node_modules", "results", ".git"]);

export type Violation = { path: string; line: number; rule: string; message: string };

/** Blanks strings, template text, comments and regex literals, keeping every newline. */
export function blankNonCode(source: string): string {
  const out = source.split("");
  const blank = (from: number, to: number) => {
    for (let i = from; i < to; i++) if (out[i] !== "\n") out[i] = " ";
  };
  // Stack of template-literal brace depths: `${` opens code inside a template.
  const templateDepths: number[] = [];
  let braceDepth = 0;
  let lastSignificant = "";
  let i = 0;
  while (i < source.length) {
    const c = source[i]!;
    const next = source[i + 1];
    if (c === "/" && next === "/") {
      const end = source.indexOf("\n", i);
      const stop = end === -1 ? source.length : end;
      blank(i, stop);
      i = stop;
    } else if (c === "/" && next === "*") {
      const end = source.indexOf("*/", i + 2);
      const stop = end === -1 ? source.length : end + 2;
      blank(i, stop);
      i = stop;
    } else if (c === '"' || c === "'") {
      const stop = skipQuoted(source, i, c);
      blank(i + 1, stop - 1);
      i = stop;
      lastSignificant = c;
    } else if (c === "`" || (c === "}" && templateDepths.at(-1) === braceDepth)) {
      if (c === "}") templateDepths.pop();
      const { stop, opensCode } = skipTemplate(source, i + 1);
      blank(i + 1, opensCode ? stop - 2 : stop - 1);
      if (opensCode) templateDepths.push(braceDepth);
      i = stop;
      lastSignificant = "`";
    } else if (c === "/" && startsRegex(lastSignificant)) {
      const stop = skipRegex(source, i);
      blank(i + 1, stop - 1);
      i = stop;
      lastSignificant = "/";
    } else {
      if (c === "{") braceDepth++;
      if (c === "}") braceDepth--;
      if (!/\s/.test(c)) lastSignificant = c;
      i++;
    }
  }
  return out.join("");
}

function skipQuoted(source: string, start: number, quote: string): number {
  let i = start + 1;
  while (i < source.length && source[i] !== quote && source[i] !== "\n") {
    i += source[i] === "\\" ? 2 : 1;
  }
  return i + 1;
}

/** From just after "`" or "}", returns where the template text ends and whether `${` ended it. */
function skipTemplate(source: string, start: number): { stop: number; opensCode: boolean } {
  let i = start;
  while (i < source.length) {
    const c = source[i];
    if (c === "\\") {
      i += 2;
    } else if (c === "`") {
      return { stop: i + 1, opensCode: false };
    } else if (c === "$" && source[i + 1] === "{") {
      return { stop: i + 2, opensCode: true };
    } else {
      i++;
    }
  }
  return { stop: source.length, opensCode: false };
}

function startsRegex(lastSignificant: string): boolean {
  return lastSignificant === "" || "(,=:[!&|?{};+-*%<>~^".includes(lastSignificant);
}

function skipRegex(source: string, start: number): number {
  let i = start + 1;
  let inClass = false;
  while (i < source.length && source[i] !== "\n") {
    const c = source[i];
    if (c === "\\") {
      i += 2;
      continue;
    }
    if (c === "[") inClass = true;
    if (c === "]") inClass = false;
    if (c === "/" && !inClass) return i + 1;
    i++;
  }
  return i;
}

function hasOptOut(lines: string[], index: number, rule: string): boolean {
  const marker = `tidy: allow-${rule}`;
  return (lines[index]?.includes(marker) ?? false) || (lines[index - 1]?.includes(marker) ?? false);
}

/** Index of the line holding the `}` that closes the `{` ending line `start`, or -1. */
function closingLine(code: string[], start: number): number {
  let depth = 0;
  for (let line = start; line < code.length; line++) {
    const text = code[line]!;
    // On the opening line only the final `{` counts; earlier braces are parameter types.
    const from = line === start ? text.lastIndexOf("{") : 0;
    for (let i = from; i < text.length; i++) {
      if (text[i] === "{") depth++;
      if (text[i] === "}") depth--;
      if (depth === 0) return line;
    }
  }
  return -1;
}

const CONTROL_WORDS = /^\s*(\}\s*)?(if|for|while|switch|catch|with|else|do|try|finally)\b/;
const FUNCTION_STARTS = [
  /\bfunction\b[^;]*\{\s*$/,
  /=>\s*\{\s*$/,
  new RegExp(
    String.raw`^\s*(?:(?:public|protected|static|async|override|get|set|\*)\s+)*` +
      String.raw`#?[\w$]+\s*(?:<[^>]*>)?\(.*\)\s*(?::[^=]*)?\{\s*$`,
  ),
  /^\s*\)(?:\s*:[^=]*)?\s*\{\s*$/,
];

function isFunctionStart(codeLine: string): boolean {
  if (CONTROL_WORDS.test(codeLine)) return false;
  return FUNCTION_STARTS.some((pattern) => pattern.test(codeLine));
}

function checkFunctionLengths(path: string, lines: string[], code: string[]): Violation[] {
  const violations: Violation[] = [];
  for (let line = 0; line < code.length; line++) {
    if (!isFunctionStart(code[line]!)) continue;
    const end = closingLine(code, line);
    if (end === -1) continue;
    const length = end - line + 1;
    if (length > FUNCTION_LINES_MAX && !hasOptOut(lines, line, "long-function")) {
      violations.push({
        path,
        line: line + 1,
        rule: "function-length",
        message: `function of ${length} lines exceeds ${FUNCTION_LINES_MAX}`,
      });
    }
  }
  return violations;
}

const EXPORT_START = /^\s*export\s+(?:default\s+)?(?:declare\s+)?(?:abstract\s+)?(async\s+)?(\w+)/;

/** The code lines that make up an exported declaration's public signature. */
function exportedSignature(code: string[], start: number): string[] {
  const kind = EXPORT_START.exec(code[start]!)?.[2];
  const firstLine = code[start]!;
  if (kind === "type" || kind === "interface") {
    const end = firstLine.trimEnd().endsWith("{") ? closingLine(code, start) : start;
    return code.slice(start, Math.max(start, end) + 1);
  }
  if (kind === "class") {
    const end = closingLine(code, start);
    return memberSignatures(code.slice(start, end + 1));
  }
  // Functions and constants: everything up to the body's opening brace or the initialiser.
  const signature: string[] = [];
  for (let line = start; line < code.length && line < start + 20; line++) {
    const text = code[line]!;
    const bodyAt = kind === "function" ? text.search(/\)\s*(?::[^{]*)?\{\s*$/) : -1;
    const initAt = kind === "function" ? -1 : text.indexOf(" = ");
    if (initAt !== -1) {
      const rest = text.slice(initAt);
      const arrow = rest.indexOf("=>");
      signature.push(text.slice(0, initAt) + (arrow === -1 ? "" : rest.slice(0, arrow)));
      break;
    }
    signature.push(text);
    if (bodyAt !== -1 || text.trimEnd().endsWith(";")) break;
  }
  return signature;
}

/** Lines of a class body at member depth that are not private. */
function memberSignatures(classLines: string[]): string[] {
  const members: string[] = [];
  let depth = 0;
  for (const text of classLines) {
    const trimmed = text.trim();
    const isPrivate = trimmed.startsWith("#") || /^(?:static\s+)?private\b/.test(trimmed);
    if (depth === 1 && !isPrivate) members.push(text);
    for (const c of text) {
      if (c === "{") depth++;
      if (c === "}") depth--;
    }
  }
  return members;
}

function checkExportedAny(path: string, lines: string[], code: string[]): Violation[] {
  const violations: Violation[] = [];
  for (let line = 0; line < code.length; line++) {
    if (!EXPORT_START.test(code[line]!)) continue;
    const signature = exportedSignature(code, line);
    if (signature.some((text) => /\bany\b/.test(text)) && !hasOptOut(lines, line, "any")) {
      violations.push({
        path,
        line: line + 1,
        rule: "exported-any",
        message: "`any` in an exported signature; name the type or use `unknown`",
      });
    }
  }
  return violations;
}

const TIME_WAIT = /\bsetTimeout\b|\bBun\.sleep\b|\bsleep\s*\(|\bdelay\s*\(/;

function checkTestWaits(path: string, lines: string[], code: string[]): Violation[] {
  const violations: Violation[] = [];
  for (let line = 0; line < code.length; line++) {
    if (!TIME_WAIT.test(code[line]!)) continue;
    if (hasOptOut(lines, line, "timeout")) continue;
    violations.push({
      path,
      line: line + 1,
      rule: "test-timeout",
      message: "time-based wait in a test; wait for a condition instead",
    });
  }
  return violations;
}

function checkLineLengths(path: string, lines: string[]): Violation[] {
  const violations: Violation[] = [];
  lines.forEach((text, index) => {
    if (text.length > LINE_COLUMNS_MAX) {
      violations.push({
        path,
        line: index + 1,
        rule: "line-length",
        message: `line of ${text.length} columns exceeds ${LINE_COLUMNS_MAX}`,
      });
    }
  });
  return violations;
}

/** Checks one file. `path` is relative to the project root, with `/` separators. */
export function tidyFile(path: string, source: string): Violation[] {
  const lines = source.split("\n");
  const violations = checkLineLengths(path, lines);
  if (path.endsWith(".sh")) return violations;
  const code = blankNonCode(source).split("\n");
  const top = path.split("/")[0];
  if (top === "record" || top === "engine" || top === "protocol") {
    violations.push(...checkFunctionLengths(path, lines, code));
  }
  if (top === "test") violations.push(...checkTestWaits(path, lines, code));
  violations.push(...checkExportedAny(path, lines, code));
  return violations;
}

function* sourceFiles(root: string, dir: string): Generator<string> {
  for (const entry of readdirSync(join(root, dir))) {
    if (SKIP_DIRS.has(entry)) continue;
    const path = join(dir, entry);
    if (statSync(join(root, path)).isDirectory()) {
      yield* sourceFiles(root, path);
    } else if (SOURCE_EXTENSIONS.some((extension) => entry.endsWith(extension))) {
      yield path;
    }
  }
}

/** Checks every source file under the project's source folders. */
export function tidyTree(root: string): Violation[] {
  const violations: Violation[] = [];
  for (const dir of SOURCE_DIRS) {
    if (!statSync(join(root, dir), { throwIfNoEntry: false })?.isDirectory()) continue;
    for (const path of sourceFiles(root, dir)) {
      const normalized = relative(root, join(root, path)).split(sep).join("/");
      violations.push(...tidyFile(normalized, readFileSync(join(root, path), "utf8")));
    }
  }
  return violations;
}

if (import.meta.main) {
  const root = process.argv[2] ?? process.cwd();
  const violations = tidyTree(root);
  for (const v of violations) console.error(`${v.path}:${v.line}: [${v.rule}] ${v.message}`);
  console.log(`tidy: ${violations.length} violation${violations.length === 1 ? "" : "s"}`);
  process.exitCode = violations.length === 0 ? 0 : 1;
}
