import assert from "node:assert/strict";
import { describe, test } from "node:test";
import packageJson from "../../package.json" with { type: "json" };
import { runScript } from "../helpers.ts";

const CLI = "bin/sluice.ts";

describe("sluice command", () => {
  test("version prints the package version and runtime", () => {
    const result = runScript(CLI, ["version"]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`^sluice ${packageJson.version} \\((bun|deno) `));
  });

  test("--help lists every subcommand", () => {
    const result = runScript(CLI, ["--help"]);
    assert.equal(result.status, 0, result.stderr);
    for (const name of ["serve", "topics", "produce", "consume", "bench", "version"]) {
      assert.match(result.stdout, new RegExp(`^  ${name} `, "m"));
    }
  });

  test("each subcommand has --help", () => {
    for (const name of ["serve", "topics", "produce", "consume", "bench", "version"]) {
      const result = runScript(CLI, [name, "--help"]);
      assert.equal(result.status, 0, `${name}: ${result.stderr}`);
      assert.match(result.stdout, new RegExp(`^Usage: sluice ${name}`));
    }
  });

  test("an unknown flag is a one-line error with exit code 2", () => {
    const result = runScript(CLI, ["serve", "--bogus"]);
    assert.equal(result.status, 2);
    assert.equal(result.stderr.trimEnd().split("\n").length, 1);
    assert.match(result.stderr, /^sluice serve: .*bogus/);
  });

  test("a flag missing its value is a one-line error with exit code 2", () => {
    const result = runScript(CLI, ["serve", "--port"]);
    assert.equal(result.status, 2);
    assert.equal(result.stderr.trimEnd().split("\n").length, 1);
    assert.match(result.stderr, /--port/);
  });

  test("an unknown command is a one-line error with exit code 2", () => {
    const result = runScript(CLI, ["frobnicate"]);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /unknown command 'frobnicate'/);
  });
});
