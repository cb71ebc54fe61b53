// The wall clock against the monotonic one over a run.
//
// The harness times messages on a monotonic-based epoch clock (performance.timeOrigin +
// performance.now(), bench/worker/protocol.ts), which a wall-clock adjustment does not move.
// Brokers time what they decide on the wall clock: when a delayed message is due, when a TTL
// runs out. If the wall clock steps during a run (an NTP step, or a VM paused, snapshotted
// or forked, as these benchmark VMs are now and then), the two disagree by the step from then
// on: delayed deliveries look early or late by up to its size, and latencies that span it are
// off. The step cannot be undone from the figures, so the run says it happened.

/** Steps this large or larger are reported; NTP's slewing moves the clock far less in a run. */
export const CLOCK_STEP_NOTICE_MS = 50;

/** The wall clock minus the monotonic-based epoch clock, ms, now. */
export function wallSkewMs(
  wallMs: number = Date.now(),
  monotonicEpochMs: number = performance.timeOrigin + performance.now(),
): number {
  return wallMs - monotonicEpochMs;
}

/** The line a run prints when its wall clock stepped by `stepMs`, or undefined. */
export function clockStepNotice(driver: string, stepMs: number): string | undefined {
  if (!(Math.abs(stepMs) >= CLOCK_STEP_NOTICE_MS)) return undefined;
  const sign = stepMs > 0 ? "+" : "−";
  return (
    `${driver}: the wall clock stepped ${sign}${Math.abs(stepMs).toFixed(0)} ms against the ` +
    "monotonic clock during the run (a clock adjustment, or the VM paused): latencies that " +
    "span it, and delayed deliveries' lateness, are off by up to that much"
  );
}
