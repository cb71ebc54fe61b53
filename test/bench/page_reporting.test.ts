// The free page reporting figures a run records (bench/page_reporting.ts): read from sysfs
// where the kernel has them, null where it has not, and described for the log.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  describePageReporting,
  pageReportingBetween,
  pageReportingMark,
} from "../../bench/page_reporting.ts";

const DIR = "/sys/module/page_reporting/parameters";

function reader(files: Record<string, string>): (path: string) => string | undefined {
  return (path) => files[path];
}

describe("free page reporting", () => {
  test("a kernel with counters: passes and bytes over the phase", () => {
    const start = pageReportingMark(
      reader({
        [`${DIR}/page_reporting_order`]: "5\n",
        [`${DIR}/passes`]: "15988\n",
        [`${DIR}/reported_kib`]: "1171034976\n",
      }),
    );
    const end = pageReportingMark(
      reader({
        [`${DIR}/page_reporting_order`]: "5\n",
        [`${DIR}/passes`]: "16018\n",
        [`${DIR}/reported_kib`]: String(1171034976 + 9 * 2 ** 20),
      }),
    );
    const between = pageReportingBetween(start, end);
    assert.deepEqual(between, { order: 5, passes: 30, reportedBytes: 9 * 2 ** 30 });
    assert.equal(
      describePageReporting(between!),
      "free page reporting (order 5): 30 passes, 9.0 GiB handed to the host over the " +
        "measured phase",
    );
  });

  test("upstream Linux has the order only", () => {
    const mark = pageReportingMark(reader({ [`${DIR}/page_reporting_order`]: "5" }));
    assert.deepEqual(mark, { order: 5, passes: null, reportedKib: null });
    const between = pageReportingBetween(mark, mark)!;
    assert.deepEqual(between, { order: 5, passes: null, reportedBytes: null });
    assert.equal(
      describePageReporting(between),
      "free page reporting (order 5) over the measured phase",
    );
  });

  test("no free page reporting: nothing recorded", () => {
    assert.equal(pageReportingMark(reader({})), undefined);
    assert.equal(pageReportingBetween(undefined, undefined), null);
    // A value that is not a number is not a figure.
    assert.equal(pageReportingMark(reader({ [`${DIR}/page_reporting_order`]: "x" })), undefined);
  });
});
