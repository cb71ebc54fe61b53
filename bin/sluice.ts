#!/usr/bin/env bun
// The `sluice` command: one entry, a table of subcommands, `node:util` parseArgs for each.
// Usage errors (unknown flag, missing value, bad positional) print one line and exit 2, the
// convention of POSIX utilities; operational failures exit 1.

import { parseArgs } from "node:util";
import { UsageError } from "./_args.ts";
import { COMMANDS, type Command } from "./commands.ts";

const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((command) => command.name.length));
  const lines = COMMANDS.map((command) => `  ${command.name.padEnd(width)}  ${command.summary}`);
  return [
    "sluice: a message-log storage engine and broker",
    "",
    "Usage: sluice <command> [options]",
    "",
    "Commands:",
    ...lines,
    "",
    "Run `sluice <command> --help` for a command's options.",
  ].join("\n");
}

function commandHelp(command: Command): string {
  const lines = [`Usage: sluice ${command.usage}`, "", command.summary];
  const names = Object.keys(command.options);
  if (names.length > 0) {
    lines.push("", "Options:");
    for (const name of names) {
      const option = command.options[name]!;
      const flag = option.type === "string" ? `--${name} <value>` : `--${name}`;
      lines.push(`  ${flag.padEnd(26)}${option.help}`);
    }
  }
  lines.push(`  ${"--help".padEnd(26)}Show this help`);
  return lines.join("\n");
}

async function runCommand(command: Command, argv: string[]): Promise<number> {
  const options: Record<
    string,
    { type: "string" | "boolean"; short?: string; multiple?: boolean }
  > = {
    help: { type: "boolean", short: "h" },
  };
  for (const [name, option] of Object.entries(command.options)) {
    options[name] =
      option.multiple === true ? { type: option.type, multiple: true } : { type: option.type };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (error) {
    return usageFailure(command.name, (error as Error).message);
  }
  if (parsed.values["help"] === true) {
    console.log(commandHelp(command));
    return EXIT_OK;
  }
  try {
    return await command.run(parsed.values, parsed.positionals);
  } catch (error) {
    if (error instanceof UsageError) return usageFailure(command.name, error.message);
    console.error(`sluice ${command.name}: ${(error as Error).message}`);
    return EXIT_FAILURE;
  }
}

function usageFailure(commandName: string, message: string): number {
  // parseArgs messages can span lines (they add a hint); the contract is one line.
  const firstLine = message.split("\n")[0] ?? message;
  console.error(`sluice ${commandName}: ${firstLine} (see \`sluice ${commandName} --help\`)`);
  return EXIT_USAGE;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(mainHelp());
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (name === "--version" || name === "-v") return main(["version"]);
  const command = COMMANDS.find((candidate) => candidate.name === name);
  if (command === undefined) {
    console.error(`sluice: unknown command '${name}' (see \`sluice --help\`)`);
    return EXIT_USAGE;
  }
  return runCommand(command, rest);
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
