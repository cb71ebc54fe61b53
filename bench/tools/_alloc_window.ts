// The figures of one process's window in alloc_per_msg.ts, from its stderr: BUN_JSC_logGC's
// collection lines between two `[alloc-probe]` lines (_alloc_probe.ts). A collection's line
//
//   [GC<...>: START M 8928kb => EdenCollection, ... => 143kb, p=1.248950ms (max ...) ... END]
//
// gives the heap's size when it started and when it ended, and its pause. The bytes allocated
// in the window are the heap's growth between collections: each start size less the previous
// end size (the first probe's heap size before the first), plus the last probe's heap size
// less the last end size.

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
  let pauseMs = 0;
  let pauseMsMax = 0;
  for (const line of lines.slice(from + 1, to)) {
    const started = / START \w+ (\d+)kb =>/.exec(line);
    if (started !== null) {
      allocatedKb += Math.max(0, Number(started[1]) - heapKb);
      collections++;
    }
    const ended = /=> (\d+)kb, p=([\d.]+)ms/.exec(line);
    if (ended !== null) {
      heapKb = Number(ended[1]);
      pauseMs += Number(ended[2]);
      pauseMsMax = Math.max(pauseMsMax, Number(ended[2]));
    }
  }
  allocatedKb += Math.max(0, last.heapBytes / 1024 - heapKb);
  const per10k = 10_000 / messages;
  return {
    bytesPerMsg: Math.round((allocatedKb * 1024) / messages),
    gcPer10k: round(collections * per10k),
    gcPauseMsPer10k: round(pauseMs * per10k),
    gcPauseMsMax: round(pauseMsMax),
    timeoutsPerMsg: round((last.timeouts - first.timeouts) / messages, 3),
    immediatesPerMsg: round((last.immediates - first.immediates) / messages, 3),
    microtasksPerMsg: round((last.microtasks - first.microtasks) / messages, 3),
  };
}

export function round(value: number, digits = 2): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}
