import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  loadWorkload,
  parseWorkload,
  validateWorkload,
  WorkloadError,
  workloadNames,
} from "../../bench/workload.ts";
import { tempDir } from "../helpers.ts";

const VALID = {
  name: "t",
  topics: 1,
  partitionsPerTopic: 4,
  messageSize: 1024,
  producersPerTopic: 1,
  subscriptionsPerTopic: 1,
  consumerPerSubscription: 1,
  producerRate: 1000,
  testDurationSeconds: 10,
  warmupDurationSeconds: 2,
};

/** The error validating VALID with `changes` applied; fails when there is none. */
function errorFor(changes: Record<string, unknown>): WorkloadError {
  try {
    validateWorkload({ ...VALID, ...changes }, "bad.yaml");
  } catch (error) {
    assert.ok(error instanceof WorkloadError, `not a WorkloadError: ${String(error)}`);
    return error;
  }
  assert.fail(`no error for ${JSON.stringify(changes)}`);
}

describe("workloads", () => {
  test("every shipped workload loads, and quick takes about 20 seconds", () => {
    const names = workloadNames();
    for (const expected of [
      "quick",
      "max-rate-1kb-16p",
      "fixed-rate-10k-1kb",
      "small-100b",
      "queue-ack-1kb",
      "queue-1kb",
      "queue-1kb-release",
      "omb-1-topic-100-partitions-1kb",
    ]) {
      assert.ok(names.includes(expected), `missing workload ${expected}`);
    }
    for (const name of names) assert.equal(loadWorkload(name).name, name);
    const quick = loadWorkload("quick");
    assert.equal(quick.warmupDurationSeconds + quick.testDurationSeconds, 20);
    const omb = loadWorkload("omb-1-topic-100-partitions-1kb");
    assert.equal(omb.partitionsPerTopic, 100);
    assert.ok(omb.payloadFile?.endsWith("payload-1kb.data"));
  });

  test("OMB minutes fields convert to seconds and defaults follow OMB", () => {
    const { testDurationSeconds, warmupDurationSeconds, ...rest } = VALID;
    const workload = validateWorkload({ ...rest, testDurationMinutes: 0.5 });
    assert.equal(workload.testDurationSeconds, 30);
    assert.equal(workload.warmupDurationSeconds, 60);
    assert.equal(workload.keyDistributor, "NO_KEY");
    assert.equal(workload.consumerBacklogSizeGB, 0);
    assert.equal(workload.useRandomizedPayloads, false);
  });

  test("a bad field is named with its value and the file", () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ partitionsPerTopic: 0 }, "partitionsPerTopic", /= 0 is invalid: must be in \[1, /],
      [{ messageSize: 4 }, "messageSize", /= 4 is invalid/],
      [{ topics: "two" }, "topics", /= "two" is invalid: must be an integer/],
      [{ producerRate: -5 }, "producerRate", /= -5/],
      [{ keyDistributor: "HASH" }, "keyDistributor", /"HASH" is invalid: must be one of NO_KEY/],
      [{ consumerBacklogSizeGB: 1 }, "consumerBacklogSizeGB", /= 1 is invalid/],
      [{ useRandomizedPayloads: "yes" }, "useRandomizedPayloads", /must be true or false/],
      [{ randomBytesRatio: 1.5 }, "randomBytesRatio", /= 1.5 is invalid/],
      [{ producerRat: 10 }, "producerRat", /is not a workload field/],
      [{ testDurationMinutes: 1 }, "testDurationSeconds", /cannot be given with/],
      [{ name: "" }, "name", /must be a non-empty string/],
      [
        { useRandomizedPayloads: true, randomizedPayloadPoolSize: 0 },
        "randomizedPayloadPoolSize",
        /at least 1/,
      ],
      [{ producerRate: 0, warmupDurationSeconds: 1 }, "warmupDurationSeconds", /too short/],
    ];
    for (const [changes, field, message] of cases) {
      const error = errorFor(changes);
      assert.equal(error.field, field, JSON.stringify(changes));
      assert.match(error.message, /^bad\.yaml: /);
      assert.ok(error.message.includes(field), error.message);
      assert.match(error.message, message);
    }
  });

  test("a missing required field is named", () => {
    const { topics: _topics, ...rest } = VALID;
    assert.throws(() => validateWorkload(rest, "w.yaml"), /^WorkloadError: w\.yaml: topics is/);
  });

  test("a file that is not YAML, or not a mapping, says so", () => {
    assert.throws(() => parseWorkload("name: [unclosed", "x.yaml"), /x\.yaml: is not valid YAML/);
    assert.throws(() => parseWorkload("- 1\n- 2\n", "y.yaml"), /y\.yaml: is not a YAML mapping/);
  });

  test("payloadFile is read relative to the workload file and must match messageSize", () => {
    using dir = tempDir();
    fs.writeFileSync(join(dir.path, "p.data"), new Uint8Array(100));
    const file = join(dir.path, "w.yaml");
    const yaml = (size: number) =>
      Object.entries({ ...VALID, messageSize: size, payloadFile: "p.data" })
        .map(([key, value]) => `${key}: ${value}`)
        .join("\n");
    fs.writeFileSync(file, yaml(100));
    assert.equal(loadWorkload(file).payloadFile, join(dir.path, "p.data"));
    fs.writeFileSync(file, yaml(200));
    assert.throws(
      () => loadWorkload(file),
      (error: Error) =>
        error.message.startsWith(`${file}: payloadFile`) &&
        error.message.includes("holds 100 bytes but messageSize is 200"),
    );
  });

  test("an unknown workload name lists the known ones", () => {
    assert.throws(
      () => loadWorkload("nope"),
      /nope\.yaml: cannot be read \(known workloads: .*quick/,
    );
  });
});
