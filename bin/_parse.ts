// How the `sluice` command reads a command's flags, around node:util's parseArgs:
//
// - a flag's value may be a negative number (`--from -5` as well as `--from=-5`), which
//   parseArgs would otherwise take for a flag of its own;
// - an unknown flag is named whole, with the closest known flag when one is near
//   (`unknown flag '--form' (did you mean --from?)`);
// - help lists every flag in a column as wide as the longest, short forms first.

import { parseArgs } from "node:util";
import type { ParsedValues } from "./_args.ts";
import { UsageError } from "./_args.ts";

export type FlagSpec = {
  type: "string" | "boolean";
  help: string;
  /** A one-letter form (`-e`). */
  short?: string;
  /** May be given more than once; the value is then a list. */
  multiple?: boolean;
};

const HELP_FLAG: FlagSpec = { type: "boolean", help: "Show this help", short: "h" };

/** Joins `--flag -5` into `--flag=-5` for string flags, so a negative number is a value. */
export function joinNegativeValues(argv: readonly string[], flags: Record<string, FlagSpec>) {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const next = argv[i + 1];
    const name = arg.startsWith("--") ? arg.slice(2) : undefined;
    const short = !arg.startsWith("--") && arg.length === 2 ? arg[1] : undefined;
    const spec =
      name !== undefined
        ? flags[name]
        : Object.values(flags).find((f) => short !== undefined && f.short === short);
    if (spec?.type === "string" && next !== undefined && /^-\d/.test(next)) {
      out.push(`${arg.startsWith("--") ? arg : `--${flagName(flags, spec)}`}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

function flagName(flags: Record<string, FlagSpec>, spec: FlagSpec): string {
  return Object.entries(flags).find(([, s]) => s === spec)![0];
}

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current.push(Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** The known flag nearest to `given` (within a third of its length), if any. */
export function nearestFlag(given: string, names: readonly string[]): string | undefined {
  let best: { name: string; d: number } | undefined;
  for (const name of names) {
    const d = distance(given, name);
    if (best === undefined || d < best.d) best = { name, d };
  }
  if (best === undefined || best.d > Math.max(2, Math.floor(given.length / 3))) return undefined;
  return best.name;
}

/** parseArgs' message as one line that names the flag whole. */
function usageOf(error: Error, flags: Record<string, FlagSpec>): UsageError {
  const code = (error as { code?: string }).code;
  const quoted = /'(-[^']*)'/.exec(error.message)?.[1];
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && quoted !== undefined) {
    const given = quoted.replace(/^-+/, "").split("=")[0]!;
    const near = nearestFlag(given, Object.keys(flags));
    const hint = near === undefined ? "" : ` (did you mean --${near}?)`;
    return new UsageError(`unknown flag '${quoted}'${hint}`);
  }
  return new UsageError(error.message.split("\n")[0] ?? error.message);
}

/** Parses a command's argv against its flags; throws UsageError for any mistake. */
export function parseFlags(
  argv: readonly string[],
  commandFlags: Record<string, FlagSpec>,
): { values: ParsedValues; positionals: string[] } {
  const flags: Record<string, FlagSpec> = { help: HELP_FLAG, ...commandFlags };
  const options: Record<
    string,
    { type: "string" | "boolean"; short?: string; multiple?: boolean }
  > = {};
  for (const [name, spec] of Object.entries(flags)) {
    options[name] = {
      type: spec.type,
      ...(spec.short === undefined ? {} : { short: spec.short }),
      ...(spec.multiple === true ? { multiple: true } : {}),
    };
  }
  try {
    const parsed = parseArgs({
      args: joinNegativeValues(argv, flags),
      options,
      allowPositionals: true,
      strict: true,
    });
    return { values: parsed.values as ParsedValues, positionals: parsed.positionals };
  } catch (error) {
    throw usageOf(error as Error, flags);
  }
}

/** The Options section of a command's help: flags in one column, descriptions in another. */
export function flagsHelp(commandFlags: Record<string, FlagSpec>): string[] {
  const flags: Record<string, FlagSpec> = { ...commandFlags, help: HELP_FLAG };
  const rows = Object.entries(flags).map(([name, spec]) => {
    const short = spec.short === undefined ? "    " : `-${spec.short}, `;
    const value = spec.type === "string" ? ` <value>` : "";
    const repeat = spec.multiple === true ? " (repeatable)" : "";
    return [`${short}--${name}${value}`, `${spec.help}${repeat}`] as const;
  });
  const width = Math.max(...rows.map(([flag]) => flag.length)) + 2;
  return rows.map(([flag, help]) => `  ${flag.padEnd(width)}${help}`);
}
