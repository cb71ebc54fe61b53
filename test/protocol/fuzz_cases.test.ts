// Every case the frame fuzzer ever failed on (test/protocol/fuzz_cases/*.json, saved by
// `npm run fuzz`), replayed alone on a fresh server: it must now be answered or closed, break
// nothing, leave the server serving, and let it shut down cleanly.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { readCaseFile, replay } from "../../scripts/fuzz/run.ts";

const CASES_DIR = join(import.meta.dirname, "fuzz_cases");
const files = fs.existsSync(CASES_DIR)
  ? fs
      .readdirSync(CASES_DIR)
      .filter((name) => name.endsWith(".json"))
      .sort()
  : [];

describe("saved fuzz cases", () => {
  test("the directory holds cases to replay", () => {
    assert.ok(files.length > 0, `no cases in ${CASES_DIR}`);
  });

  for (const name of files) {
    test(`replays ${name}`, async () => {
      const fuzzCase = readCaseFile(join(CASES_DIR, name));
      const failure = await replay(fuzzCase);
      assert.equal(failure, undefined, `${name} (${fuzzCase.failure}): ${JSON.stringify(failure)}`);
    });
  }
});
