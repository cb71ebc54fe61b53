// The guest kernel's free page reporting (virtio-balloon): every two seconds it hands the
// VM's free memory back to the host, in blocks of 2^order pages. On the 2-vCPU VM sluice is
// measured on, each pass stalls every process of the machine at once (event-loop stalls of
// 20-80 ms in the broker and both load workers, every 2.0-2.1 s), and the host faults the
// pages in again when they are used next. A broker writing 150 MB/s through the page cache
// frees and takes that much memory a second, so it pays in proportion to its rate:
// bench/RESULTS.md, "Free page reporting". The harness only reads these figures, never sets
// them: a run says what its machine did.
//
//   /sys/module/page_reporting/parameters/page_reporting_order   upstream Linux (5.14+)
//   .../passes, .../reported_kib                                  where the kernel has them

import { type ProcReader, readProc } from "./tcp/isolation.ts";

const DIR = "/sys/module/page_reporting/parameters";

/** The reporting counters at one instant; null where the kernel does not have them. */
export type PageReportingMark = {
  order: number;
  passes: number | null;
  reportedKib: number | null;
};

/** Free page reporting over a phase of the run. */
export type PageReporting = {
  /** Blocks of 2^order pages are reported (5: 128 KiB); a high order reports little. */
  order: number;
  /** Reporting passes over the phase (null where the kernel does not count them). */
  passes: number | null;
  /** Bytes handed to the host over the phase (null where the kernel does not count them). */
  reportedBytes: number | null;
};

function numberAt(read: ProcReader, name: string): number | null {
  const text = read(`${DIR}/${name}`);
  if (text === undefined) return null;
  const value = Number(text.trim());
  return Number.isFinite(value) ? value : null;
}

/** The counters now; undefined where the kernel has no free page reporting. */
export function pageReportingMark(read: ProcReader = readProc): PageReportingMark | undefined {
  const order = numberAt(read, "page_reporting_order");
  if (order === null) return undefined;
  return { order, passes: numberAt(read, "passes"), reportedKib: numberAt(read, "reported_kib") };
}

export function pageReportingBetween(
  start: PageReportingMark | undefined,
  end: PageReportingMark | undefined,
): PageReporting | null {
  if (start === undefined || end === undefined) return null;
  const between = (a: number | null, b: number | null) => (a === null || b === null ? null : b - a);
  const kib = between(start.reportedKib, end.reportedKib);
  return {
    order: end.order,
    passes: between(start.passes, end.passes),
    reportedBytes: kib === null ? null : kib * 1024,
  };
}

/** "free page reporting (order 5): 31 passes, 9.1 GiB handed to the host" for the log. */
export function describePageReporting(reporting: PageReporting): string {
  const figures: string[] = [];
  if (reporting.passes !== null) figures.push(`${reporting.passes} passes`);
  if (reporting.reportedBytes !== null) {
    figures.push(`${(reporting.reportedBytes / 2 ** 30).toFixed(1)} GiB handed to the host`);
  }
  const counted = figures.length > 0 ? `: ${figures.join(", ")}` : "";
  return `free page reporting (order ${reporting.order})${counted} over the measured phase`;
}
