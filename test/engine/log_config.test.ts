import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { isSluiceError } from "../../record/mod.ts";
import {
  FSYNC_INTERVAL_MS_MAX,
  LOG_CONFIG_DEFAULTS,
  type LogConfig,
  MAX_BATCH_BYTES_MAX,
  resolveLogConfig,
  SEGMENT_BYTES_MAX,
  SEGMENT_BYTES_MIN,
} from "../../engine/log_config.ts";

const MIB = 1024 * 1024;
const DAY_MS = 24 * 60 * 60 * 1000;

/** Asserts that resolving `partial` fails INVALID_CONFIG naming `field`, with `message`. */
function assertInvalid(partial: unknown, field: string, message: RegExp): void {
  assert.throws(
    () => resolveLogConfig(partial as Partial<LogConfig>),
    (error: unknown) => {
      assert.ok(isSluiceError(error, "INVALID_CONFIG"), `${String(error)} is INVALID_CONFIG`);
      assert.equal(error.details["field"], field);
      assert.match(error.message, message);
      return true;
    },
  );
}

test("an empty config resolves to the defaults, as a fresh object", () => {
  for (const config of [resolveLogConfig(), resolveLogConfig({})]) {
    assert.deepEqual(config, LOG_CONFIG_DEFAULTS);
    assert.notEqual(config, LOG_CONFIG_DEFAULTS);
    assert.notEqual(config.fsync, LOG_CONFIG_DEFAULTS.fsync);
    assert.ok(!Object.isFrozen(config));
  }
});

test("the defaults are Kafka's where Kafka has one", () => {
  assert.deepEqual(LOG_CONFIG_DEFAULTS, {
    segmentBytes: 1024 * MIB,
    segmentMs: 7 * DAY_MS,
    indexIntervalBytes: 4096,
    retentionMs: 7 * DAY_MS,
    retentionBytes: -1,
    maxBatchBytes: MIB,
    fsync: { intervalMs: 1000 },
  });
});

test("the defaults cannot be changed, not even the nested fsync policy", () => {
  assert.ok(Object.isFrozen(LOG_CONFIG_DEFAULTS));
  assert.ok(Object.isFrozen(LOG_CONFIG_DEFAULTS.fsync));
  assert.throws(() => {
    (LOG_CONFIG_DEFAULTS.fsync as { intervalMs: number }).intervalMs = 1;
  }, TypeError);
  assert.deepEqual(resolveLogConfig().fsync, { intervalMs: 1000 });
});

test("given fields override the defaults and the rest keep them", () => {
  const config = resolveLogConfig({ segmentMs: 60_000, retentionBytes: 10 * MIB, fsync: "never" });
  assert.deepEqual(config, {
    ...LOG_CONFIG_DEFAULTS,
    segmentMs: 60_000,
    retentionBytes: 10 * MIB,
    fsync: "never",
  });
});

type IntegerField = {
  field: keyof LogConfig;
  min: number;
  max: number;
  /** -1 ("no limit") is accepted besides [min, max]. */
  unlimited: boolean;
};

const INTEGER_FIELDS: IntegerField[] = [
  { field: "segmentBytes", min: SEGMENT_BYTES_MIN, max: SEGMENT_BYTES_MAX, unlimited: false },
  { field: "segmentMs", min: 1, max: Number.MAX_SAFE_INTEGER, unlimited: false },
  { field: "indexIntervalBytes", min: 1, max: 64 * MIB, unlimited: false },
  { field: "retentionMs", min: 0, max: Number.MAX_SAFE_INTEGER, unlimited: true },
  { field: "retentionBytes", min: 0, max: Number.MAX_SAFE_INTEGER, unlimited: true },
  { field: "maxBatchBytes", min: 61, max: MAX_BATCH_BYTES_MAX, unlimited: false },
];

test("integer fields accept their bounds and reject one past, naming field and value", () => {
  for (const { field, min, max, unlimited } of INTEGER_FIELDS) {
    assert.equal(resolveLogConfig({ [field]: min })[field], min, `${field} = min`);
    assert.equal(resolveLogConfig({ [field]: max })[field], max, `${field} = max`);
    if (unlimited) assert.equal(resolveLogConfig({ [field]: -1 })[field], -1, `${field} = -1`);
    // Fields where -1 means "no limit" name it in the rule.
    const range = `must be ${unlimited ? "-1 \\(no limit\\) or " : ""}in \\[${min}, ${max}\\]`;
    // For fields where -1 means "no limit", the first invalid value below the range is -2.
    const below = unlimited ? -2 : min - 1;
    assertInvalid({ [field]: below }, field, new RegExp(`^Config ${field} = ${below} .*${range}`));
    if (max < Number.MAX_SAFE_INTEGER) {
      assertInvalid({ [field]: max + 1 }, field, new RegExp(`${field} = ${max + 1} .*${range}`));
    } else {
      // Past MAX_SAFE_INTEGER a number is no longer exact: it fails as "not an integer".
      assertInvalid({ [field]: max + 2 }, field, /must be an integer/);
    }
  }
});

test("each integer field rejects values that are not integers, showing the value", () => {
  const cases: [unknown, string][] = [
    [1.5, "1.5"],
    ["4096", "4096"],
    [Number.NaN, "NaN"],
    [Number.POSITIVE_INFINITY, "Infinity"],
    [null, "null"],
    [true, "true"],
    [4096n, "4096"],
    [[4096], "\\[4096\\]"],
    [{ bytes: 4096 }, '\\{"bytes":4096\\}'],
  ];
  for (const { field } of INTEGER_FIELDS) {
    for (const [value, shown] of cases) {
      assertInvalid(
        { [field]: value },
        field,
        new RegExp(`${field} = ${shown} .*must be an integer`),
      );
    }
  }
});

test("unknown fields are rejected by name", () => {
  assertInvalid({ segmentSize: 1024 }, "segmentSize", /segmentSize .*is not a log config field/);
  assertInvalid({ ...LOG_CONFIG_DEFAULTS, "retention.ms": 5 }, "retention.ms", /not a log config/);
  // A key that would reach the prototype through a spread is just another unknown field.
  const hostile = JSON.parse('{"__proto__": {"segmentBytes": 5}}') as Partial<LogConfig>;
  assertInvalid(hostile, "__proto__", /is not a log config field/);
});

test("a config that is not an object is rejected", () => {
  for (const value of [null, 5, "segmentBytes=1024", true]) {
    assertInvalid(value, "config", /^Config config = .* must be an object$/);
  }
});

test("fsync takes always, never or { intervalMs } and nothing else", () => {
  assert.equal(resolveLogConfig({ fsync: "always" }).fsync, "always");
  assert.equal(resolveLogConfig({ fsync: "never" }).fsync, "never");
  assert.deepEqual(resolveLogConfig({ fsync: { intervalMs: 1 } }).fsync, { intervalMs: 1 });
  const dayMs = FSYNC_INTERVAL_MS_MAX;
  assert.deepEqual(resolveLogConfig({ fsync: { intervalMs: dayMs } }).fsync, { intervalMs: dayMs });
  const kinds = /must be "always", "never" or \{ intervalMs \}/;
  for (const value of ["sometimes", "ALWAYS", "", null, true, 100, {}, [], { interval: 5 }]) {
    assertInvalid({ fsync: value }, "fsync", kinds);
  }
  assertInvalid({ fsync: { intervalMs: 5, alsoOnClose: true } }, "fsync", /takes only/);
  const range = `must be in \\[1, ${dayMs}\\]`;
  assertInvalid({ fsync: { intervalMs: 0 } }, "fsync.intervalMs", new RegExp(`= 0 .*${range}`));
  const over = dayMs + 1;
  assertInvalid({ fsync: { intervalMs: over } }, "fsync.intervalMs", new RegExp(`= ${over} `));
  assertInvalid({ fsync: { intervalMs: 1.5 } }, "fsync.intervalMs", /= 1.5 .*must be an integer/);
  assertInvalid({ fsync: { intervalMs: "5" } }, "fsync.intervalMs", /must be an integer/);
});

test("the resolved fsync policy does not share the caller's object", () => {
  const policy = { intervalMs: 50 };
  const config = resolveLogConfig({ fsync: policy });
  policy.intervalMs = 0;
  assert.deepEqual(config.fsync, { intervalMs: 50 });
});

test("values that cannot be shown as JSON still fail as INVALID_CONFIG", () => {
  assertInvalid(
    { fsync: { intervalMs: 5, extra: 2n ** 64n } },
    "fsync",
    /"extra":"18446744073709551616n"/,
  );
  const cyclic: Record<string, unknown> = { intervalMs: 5 };
  cyclic["self"] = cyclic;
  assertInvalid({ fsync: cyclic }, "fsync", /\[object Object\] is invalid: takes only/);
});

test("maxBatchBytes above segmentBytes is rejected, naming both", () => {
  assertInvalid(
    { segmentBytes: 4096, maxBatchBytes: 8192 },
    "maxBatchBytes",
    /^Config maxBatchBytes = 8192 is invalid: must not exceed segmentBytes 4096$/,
  );
  const equal = resolveLogConfig({ segmentBytes: 4096, maxBatchBytes: 4096 });
  assert.equal(equal.maxBatchBytes, 4096);
});

test("a segmentBytes below the default batch limit lowers maxBatchBytes unless it is given", () => {
  assert.equal(resolveLogConfig({ segmentBytes: SEGMENT_BYTES_MIN }).maxBatchBytes, 1024);
  assert.equal(resolveLogConfig({ segmentBytes: 64 * 1024 }).maxBatchBytes, 64 * 1024);
  assert.equal(resolveLogConfig({ segmentBytes: 2 * MIB }).maxBatchBytes, MIB);
  const given = resolveLogConfig({ segmentBytes: 64 * 1024, maxBatchBytes: 1000 });
  assert.equal(given.maxBatchBytes, 1000);
});

test("any value in any field resolves or fails INVALID_CONFIG, never another error", () => {
  const fields = [...INTEGER_FIELDS.map((f) => f.field), "fsync", "unknownField"];
  // An explicit undefined is left out: it means "absent" for maxBatchBytes but is an invalid
  // value for the other fields, and which of the two is meant is not settled.
  const value = fc
    .anything({ withBigInt: true, withMap: true, withSet: true, withDate: true })
    .filter((input) => input !== undefined);
  fc.assert(
    fc.property(fc.constantFrom(...fields), value, (field, input) => {
      try {
        const config = resolveLogConfig({ [field]: input });
        assert.ok(field in LOG_CONFIG_DEFAULTS, `${field} is a known field`);
        if (field !== "fsync") assert.equal(config[field as keyof LogConfig], input);
      } catch (error) {
        assert.ok(isSluiceError(error, "INVALID_CONFIG"), String(error));
        assert.equal(error.details["field"]?.toString().split(".")[0], field);
      }
    }),
    { numRuns: 2000, seed: 7 },
  );
});
