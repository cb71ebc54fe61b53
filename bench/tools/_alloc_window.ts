// The figures of one process's window in alloc_per_msg.ts, from its stderr: BUN_JSC_logGC's
// collection lines between two `[alloc-probe]` lines (_alloc_probe.ts). A collection's line
//
//   [GC<...>: START M 8928kb => EdenCollection, ... => 143kb, p=1.248950ms (max ...) ... END]
//
// gives the heap's size when it started and when it ended, and its pause. The bytes allocated
// in the window are the heap's growth between collections: each start size less the previous
// end size (the first probe's heap size before the first), plus the last probe's heap size
// less the last end size. A concurrent collection stops the program more than once: each
// increment prints its own `p=Xms` (on a line ending `...]`, the last one on the END line), and
// every one of them counts as a pause. A collection that the allocation budget started is
// announced by `Requesting GC because bytes allocated this cycle: N exceed bytes allowed: M`;
// the others were started by JavaScriptCore's timers.

export type Probe = { timeouts: number; immediates: number; microtasks: number; heapBytes: number };

/** The figures of one process's window: the log between its first and second probe line. */
export function windowFigures(log: string, messages: number) {
  const lines = log.split("\n");
  const marks = lines.flatMap((line, i) => (line.startsWith("[alloc-probe] ") ? [i] : []));
  if (marks.length < 2) {
    throw new Error(`the log has ${marks.length} [alloc-probe] lines; a window needs two`);
  }
  if (!(messages > 0)) throw new RangeError(`messages ${messages} is not a positive number`);
  const [from, to] = [marks[0]!, marks[1]!];
  const first = JSON.parse(lines[from]!.slice(14)) as Probe;
  const last = JSON.parse(lines[to]!.slice(14)) as Probe;
  let heapKb = first.heapBytes / 1024;
  let allocatedKb = 0;
  let collections = 0;
  let budgetStarted = 0;
  const pauses = { ms: 0, msMax: 0, over1Ms: 0 };
  for (const line of lines.slice(from + 1, to)) {
    if (line.startsWith("Requesting GC because bytes allocated")) budgetStarted++;
    const started = / START \w+ (\d+)kb =>/.exec(line);
    if (started !== null) {
      allocatedKb += Math.max(0, Number(started[1]) - heapKb);
      collections++;
    }
    for (const pause of line.matchAll(/\bp=([\d.]+)ms/g)) countPause(pauses, Number(pause[1]));
    const ended = /=> (\d+)kb, p=[\d.]+ms/.exec(line);
    if (ended !== null) heapKb = Number(ended[1]);
  }
  allocatedKb += Math.max(0, last.heapBytes / 1024 - heapKb);
  const per10k = 10_000 / messages;
  return {
    bytesPerMsg: Math.round((allocatedKb * 1024) / messages),
    gcPer10k: round(collections * per10k),
    gcBudgetStartedPer10k: round(budgetStarted * per10k),
    gcPauseMsPer10k: round(pauses.ms * per10k),
    gcPauseMsMax: round(pauses.msMax),
    gcPausesOver1MsPer10k: round(pauses.over1Ms * per10k),
    timeoutsPerMsg: round((last.timeouts - first.timeouts) / messages, 3),
    immediatesPerMsg: round((last.immediates - first.immediates) / messages, 3),
    microtasksPerMsg: round((last.microtasks - first.microtasks) / messages, 3),
  };
}

/** One stop of the program by the collector: summed, the longest kept, those over 1 ms counted. */
function countPause(pauses: { ms: number; msMax: number; over1Ms: number }, ms: number): void {
  pauses.ms += ms;
  pauses.msMax = Math.max(pauses.msMax, ms);
  if (ms > 1) pauses.over1Ms++;
}

export function round(value: number, digits = 2): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}
