// import_graph: the relative imports between sluice's TypeScript files, checked against the
// layering of DESIGN.md and for circles.
//
//   bun scripts/import_graph.ts [ROOT]      (deno run -A scripts/import_graph.ts works too)
//
// Every `.ts` file under ROOT (default: the repository) is read, and each relative import is
// an edge: static `import ... from "./x.ts"`, `import "./x.ts"`, `export ... from "./x.ts"` and
// dynamic `import("./x.ts")` with a literal path (type-only imports count: they tie files
// together just the same). It prints how many imports go from each folder to each other
// folder, every circle of files, and every import that breaks a layering rule:
//
//   record/  ──►  nothing else of sluice
//      ▲
//   engine/  ◄──  protocol/server/  ──►  protocol/codec/  ◄──  protocol/client/
//      ▲          (through engine/mod.ts only)  ▲
//      └──────  protocol/kafka/  ───────────────┘  (and the server's limits, transport, TLS,
//                                                     SASL gate and ACLs)
//
// It exits 1 when there is a circle or a broken rule, 0 otherwise. Only the source's code is
// read: imports inside strings, comments and template text do not count.

import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { blankNonCode } from "./tidy.ts";

// dist/ holds the compiled package (`npm run build`): declarations that mirror the sources.
const SKIP_DIRS = new Set(["node_modules", "dist", "results", "reports"]);

/** A rule: no file under `from` imports a file under `forbid`, except the files in `allow`. */
export type LayerRule = { from: string; forbid: string; allow?: string[]; why: string };

export const LAYER_RULES: readonly LayerRule[] = [
  { from: "record/", forbid: "engine/", why: "record/ is below the engine" },
  { from: "record/", forbid: "protocol/", why: "record/ is below the protocol" },
  { from: "protocol/client/", forbid: "engine/", why: "the client never depends on the engine" },
  { from: "protocol/codec/", forbid: "engine/", why: "the codecs are shared with the client" },
  { from: "engine/", forbid: "protocol/", why: "the engine knows nothing of the wire" },
  { from: "protocol/client/", forbid: "protocol/server/", why: "the client is not the server" },
  { from: "protocol/codec/", forbid: "protocol/server/", why: "codecs are below the server" },
  { from: "protocol/codec/", forbid: "protocol/client/", why: "codecs are below the client" },
  { from: "protocol/codec/", forbid: "protocol/kafka/", why: "codecs are below the listeners" },
  { from: "protocol/client/", forbid: "protocol/kafka/", why: "the client is not the server" },
  { from: "protocol/kafka/", forbid: "protocol/client/", why: "the Kafka listener is no client" },
  {
    from: "protocol/kafka/",
    forbid: "protocol/server/",
    allow: [
      "protocol/server/limits.ts",
      "protocol/server/_transport.ts",
      "protocol/server/_tls.ts",
      "protocol/server/_auth.ts",
      "protocol/server/acl.ts",
      "protocol/server/_produce_deadline.ts",
    ],
    why:
      "the Kafka listener shares only the server's limits, transport, TLS, SASL gate, ACLs " +
      "and the Produce deadline",
  },
  {
    from: "protocol/",
    forbid: "engine/",
    allow: ["engine/mod.ts"],
    why: "the protocol uses the engine only through engine/mod.ts",
  },
  { from: "record/", forbid: "ops/", why: "ops/ (logs, HTTP, metrics) sits above the broker" },
  { from: "engine/", forbid: "ops/", why: "ops/ (logs, HTTP, metrics) sits above the broker" },
  { from: "protocol/", forbid: "ops/", why: "ops/ (logs, HTTP, metrics) sits above the broker" },
  {
    from: "ops/",
    forbid: "engine/",
    allow: ["engine/mod.ts"],
    why: "ops/ reads the engine only through engine/mod.ts",
  },
];

/** One import: file paths relative to the root, with `/` separators. */
export type Edge = { from: string; to: string; line: number };

export type Violation = { edge: Edge; rule: LayerRule };

export type GraphReport = {
  files: string[];
  edges: Edge[];
  /** `from-folder -> to-folder` → number of imports, for folders that differ. */
  folderCounts: Map<string, number>;
  /** Each circle as the files along it, the first repeated at the end. */
  cycles: string[][];
  violations: Violation[];
  /** Relative imports of files that do not exist. */
  unresolved: Edge[];
};

/** Every `.ts` file under `root`, relative, sorted; hidden folders and node_modules skipped. */
export function sourceFiles(root: string): string[] {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      if (name.startsWith(".") || SKIP_DIRS.has(name)) continue;
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith(".ts")) files.push(relative(root, path).split(sep).join("/"));
    }
  };
  walk(root);
  return files;
}

// Matched on code whose strings are blanked (quotes kept), so each match ends at the opening
// quote of the specifier, which is then read from the original source at the same place.
// The clause between the keyword and `from`: `type`, a default name, `{ names }`, `* as name`.
const CLAUSE = String.raw`(?:type\s+)?(?:[\w$]+\s*,?\s*)?(?:\{[^}]*\}|\*(?:\s+as\s+[\w$]+)?)?`;
const STATIC_FROM = new RegExp(
  String.raw`(?<![\w$.])(?:import|export)\s+${CLAUSE}\s*from\s*["']`,
  "g",
);
const SIDE_EFFECT = /(?<![\w$.])import\s*["']/g;
const DYNAMIC = /(?<![\w$.])import\s*\(\s*["']/g;

/** The specifiers a source file imports, with the line of each. */
export function importSpecifiers(source: string): { specifier: string; line: number }[] {
  const code = blankNonCode(source);
  const found: { specifier: string; line: number; at: number }[] = [];
  for (const pattern of [STATIC_FROM, SIDE_EFFECT, DYNAMIC]) {
    for (const match of code.matchAll(pattern)) {
      const quoteAt = match.index + match[0].length - 1;
      const end = source.indexOf(source[quoteAt]!, quoteAt + 1);
      const line = source.slice(0, quoteAt).split("\n").length;
      found.push({ specifier: source.slice(quoteAt + 1, end), line, at: quoteAt });
    }
  }
  found.sort((a, b) => a.at - b.at);
  return found.map(({ specifier, line }) => ({ specifier, line }));
}

function folderOf(path: string): string {
  const folder = dirname(path);
  return folder === "." ? "(root)" : folder;
}

/** Reads the tree and checks it: the whole report, violations and circles included. */
export function importGraph(root: string): GraphReport {
  const files = sourceFiles(root);
  const edges: Edge[] = [];
  const unresolved: Edge[] = [];
  for (const from of files) {
    for (const { specifier, line } of importSpecifiers(readFileSync(join(root, from), "utf8"))) {
      if (!specifier.startsWith("./") && !specifier.startsWith("../")) continue;
      const to = join(dirname(from), specifier).split(sep).join("/");
      const edge = { from, to, line };
      if (existsSync(join(root, to))) edges.push(edge);
      else unresolved.push(edge);
    }
  }
  const folderCounts = new Map<string, number>();
  for (const { from, to } of edges) {
    if (folderOf(from) === folderOf(to)) continue;
    const key = `${folderOf(from)} -> ${folderOf(to)}`;
    folderCounts.set(key, (folderCounts.get(key) ?? 0) + 1);
  }
  return {
    files,
    edges,
    folderCounts,
    cycles: findCycles(files, edges),
    violations: layerViolations(edges),
    unresolved,
  };
}

export function layerViolations(edges: readonly Edge[]): Violation[] {
  const violations: Violation[] = [];
  for (const edge of edges) {
    for (const rule of LAYER_RULES) {
      if (!edge.from.startsWith(rule.from)) continue;
      if (!edge.to.startsWith(rule.forbid)) continue;
      if (rule.allow?.includes(edge.to) === true) continue;
      violations.push({ edge, rule });
    }
  }
  return violations;
}

/**
 * One circle per strongly connected component of more than one file (or a file importing
 * itself), found with Tarjan's algorithm; each is a path through the component back to its
 * first file.
 */
export function findCycles(files: readonly string[], edges: readonly Edge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const { from, to } of edges) next.set(from, [...(next.get(from) ?? []), to]);
  const components = stronglyConnected(files, next);
  const cycles: string[][] = [];
  for (const component of components) {
    const members = new Set(component);
    const start = component.slice().sort()[0]!;
    const selfLoop = next.get(start)?.includes(start) === true;
    if (component.length === 1 && !selfLoop) continue;
    cycles.push(pathBack(start, members, next));
  }
  return cycles.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

function stronglyConnected(files: readonly string[], next: Map<string, string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  let counter = 0;
  const visit = (node: string) => {
    index.set(node, counter);
    low.set(node, counter);
    counter++;
    stack.push(node);
    onStack.add(node);
    for (const to of next.get(node) ?? []) {
      if (!index.has(to)) {
        visit(to);
        low.set(node, Math.min(low.get(node)!, low.get(to)!));
      } else if (onStack.has(to)) {
        low.set(node, Math.min(low.get(node)!, index.get(to)!));
      }
    }
    if (low.get(node) !== index.get(node)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== node);
    components.push(component);
  };
  for (const file of files) if (!index.has(file)) visit(file);
  return components;
}

/** The shortest path from `start` back to itself inside one component (breadth first). */
function pathBack(start: string, members: Set<string>, next: Map<string, string[]>): string[] {
  const cameFrom = new Map<string, string>();
  const queue = [start];
  for (let head = 0; head < queue.length; head++) {
    const node = queue[head]!;
    for (const to of next.get(node) ?? []) {
      if (to === start) {
        const path = [start];
        for (let at = node; at !== start; at = cameFrom.get(at)!) path.splice(1, 0, at);
        return [...path, start];
      }
      if (!members.has(to) || cameFrom.has(to)) continue;
      cameFrom.set(to, node);
      queue.push(to);
    }
  }
  return [start, start];
}

/** The report as printed: folder counts, circles, then violations and unresolved imports. */
export function formatReport(report: GraphReport): string {
  const lines = [`${report.files.length} files, ${report.edges.length} relative imports`, ""];
  lines.push("imports between folders (from -> to: count):");
  for (const [key, count] of [...report.folderCounts].sort((a, b) => a[0].localeCompare(b[0]))) {
    lines.push(`  ${key}: ${count}`);
  }
  lines.push("", `import circles: ${report.cycles.length === 0 ? "none" : report.cycles.length}`);
  for (const cycle of report.cycles) lines.push(`  circle: ${cycle.join(" -> ")}`);
  const broken = report.violations.length === 0 ? "none" : report.violations.length;
  lines.push("", `layering violations: ${broken}`);
  for (const { edge, rule } of report.violations) {
    lines.push(`  layering violation: ${edge.from}:${edge.line} imports ${edge.to} (${rule.why})`);
  }
  for (const edge of report.unresolved) {
    lines.push(`  unresolved import: ${edge.from}:${edge.line} imports ${edge.to}`);
  }
  return lines.join("\n");
}

export function reportFailed(report: GraphReport): boolean {
  return report.cycles.length > 0 || report.violations.length > 0 || report.unresolved.length > 0;
}

if (import.meta.main) {
  // `--quiet` (as `npm run lint` runs it) prints the report only when a rule is broken.
  const quiet = process.argv.includes("--quiet");
  const root =
    process.argv.slice(2).find((arg) => arg !== "--quiet") ?? join(import.meta.dirname, "..");
  const report = importGraph(root);
  if (!quiet || reportFailed(report)) console.log(formatReport(report));
  if (reportFailed(report)) {
    console.error(
      `import_graph: ${report.cycles.length} circle(s), ${report.violations.length} layering ` +
        `violation(s), ${report.unresolved.length} unresolved import(s) under ${root}`,
    );
    process.exitCode = 1;
  }
}
