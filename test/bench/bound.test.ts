// What bound a run (bench/bound.ts): a load worker at its limit makes it client-bound; a
// machine busy on every core makes it machine-bound; otherwise neither, and each line gives
// the CPU figures it was decided from.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type BoundInput, boundOf, WORKER_BOUND_PERCENT } from "../../bench/bound.ts";

function input(overrides: Partial<BoundInput>): BoundInput {
  return {
    driver: "sluice",
    workerProcesses: [
      { label: "worker 1", cpuPercent: 45 },
      { label: "worker 2", cpuPercent: 22 },
    ],
    clientCpuPercent: 67,
    brokerCpuPercent: 80,
    machineCpu: { busyPercent: 160, stealPercent: 3, iowaitPercent: 1, cores: 2 },
    otherCpuPercent: 10,
    ...overrides,
  };
}

describe("what bound a run", () => {
  test("a worker at its limit is client-bound, named with its CPU", () => {
    const bound = boundOf(
      input({
        workerProcesses: [
          { label: "worker 1", cpuPercent: 97 },
          { label: "worker 2", cpuPercent: 30 },
        ],
        clientCpuPercent: 127,
      }),
    );
    assert.equal(bound.clientBound, true);
    assert.match(bound.boundBy, /^client-bound: worker 1 used 97% of one core \(limit 90%\)/);
    assert.match(bound.boundBy, /clients 127%, broker 80%/);
  });

  test("a busy machine with no worker at its limit is machine-bound, not client-bound", () => {
    const bound = boundOf(
      input({ machineCpu: { busyPercent: 190, stealPercent: 25, iowaitPercent: 0, cores: 2 } }),
    );
    assert.equal(bound.clientBound, false);
    assert.match(bound.boundBy, /^machine-bound, not client-bound: the machine was 190% busy/);
    assert.match(bound.boundBy, /steal 25%\); busiest worker 45% of one core/);
  });

  test("otherwise neither, with the figures", () => {
    const bound = boundOf(input({}));
    assert.equal(bound.clientBound, false);
    assert.equal(
      bound.boundBy,
      "not client-bound: clients 67%, broker 80% of the machine's 200%; " +
        "busiest worker 45% of one core",
    );
  });

  test("an embedded engine's busy worker is its broker's limit too", () => {
    const bound = boundOf(
      input({
        driver: "sluice-embedded",
        workerProcesses: [{ label: "worker 1", cpuPercent: WORKER_BOUND_PERCENT + 5 }],
        brokerCpuPercent: null,
        machineCpu: null,
        otherCpuPercent: null,
      }),
    );
    assert.equal(bound.clientBound, true);
    assert.match(bound.boundBy, /the engine runs in it/);
    assert.match(bound.boundBy, /broker not measured/);
  });
});
