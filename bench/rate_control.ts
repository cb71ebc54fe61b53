// How fast producers send. A Pacer holds one producer to a fixed-rate schedule: message k of
// the schedule is due at startMs + k × 1000 / rate. A send that leaves late (the producer was
// blocked by its in-flight limit, or the event loop was busy) still counts its latency from
// the intended time, so a stall of the system shows up in the percentiles instead of
// silently lowering the send rate: the "coordinated omission" correction OMB and wrk2 make.
//
// With producerRate 0 a RateSearch finds, during warm-up, the highest rate the system
// sustains by the rules of ./sustain.ts (keep-up, no growth of schedule lag, p99 or backlog)
// with headroom: every window of the search is judged against half the p99 bound (the
// "headroom" rule, SEARCH_P99_BOUND_SHARE), because a measured phase of 30-60 s sees more of
// the tail than a search window of a few seconds, and a rate whose short-window p99 already
// sits near the bound crosses it over the longer phase. Every step starts by settling (not
// judged): at least one second (two for the run's first step), and on while the producers
// work off what an overloaded step left in flight, while consumers work off the backlog it
// left, and, after a failed step, while the kernel writes back the dirty pages it left
// (/proc/meminfo Dirty + Writeback, the "drain" rule); the producers pause meanwhile, then
// settle a second at the new rate (at most 5 s in all), so no residue of an overloaded step is
// blamed on the next rate. Then its judged seconds:
//
//   ramp     start at min(10,000 msg/s, 10 MB/s); 1 judged second per step; double the rate
//            while it is sustained. The first rate gets a second try if it fails (the run's
//            cold start shows in it); below it, halve while nothing is sustained;
//   bisect   after the first failure, try the geometric mean of the highest sustained and the
//            lowest failed rate, 2 judged seconds per step (so the slopes are seen), until
//            they are within 10%. A failure that published only A < R msg/s caps the failed
//            side at A: rates above what the system managed to publish are not sustainable.
//            A ramp or bisect step that fails narrowly is judged once more at its rate
//            (settling first, as every step does) before it counts (the "retry" rule): one
//            stalled second (a host hiccup, a GC) fails a window of one or two seconds, and a
//            search that believed it ended far below the capacity: on 2026-12-04 a one-second
//            ramp step at 40k msg/s failed at p99 84.7 ms and queue-1kb held 30.8k, where runs
//            of the same code an hour apart held 72-95k. Narrow: only the headroom rule's
//            halved allowances failed, and the window passes the whole bound, as the measured
//            phase is judged. An overload fails by more and is not retried (the retry would
//            only take seconds the bisection needs). The retry's verdict is the step's, and a
//            retry is not retried.
//            A pass of one judged second (a ramp step) is provisional: it steers the search
//            but never stands for a rate on its own (the "standing" rule): the rate a failed
//            confirm or probe falls back to passed a window of STANDING_SECONDS_MIN or more;
//   revisit  once a run, a bisection that converged with time to spare (the confirm's seconds
//            and 8 s more after a revisit settling up to 5 s) judges its upper bound once
//            more (2 judged seconds, settling first; the
//            "revisit" rule): the run's first seconds cost every system the most per message
//            (fresh page cache and heap, code not yet compiled, connections opening), and a
//            ramp step failed there bounds a search that is otherwise over within seconds: on
//            2026-12-05 queue-1kb's 80k ramp step failed in second 9 (machine 168%), the
//            search held 73k, and the measured minute at 73k used 60-80% of the machine.
//            A revisit that passes forgets the failure and ramps on from it; one that fails
//            confirms the bound, and the confirm starts. A revisit is not retried.
//   confirm  the end of warm-up (at least 8 s, or 30% of it) holds the highest sustained
//            rate and judges its seconds as one window, the strictest test of the search
//            (the "confirm" rule: headroom over the longest window warm-up affords). It is
//            decided 2 s before warm-up ends, so when it fails, the lower rate of the
//            measured phase has 2 s to work off what the failed rate left queued. A failed
//            confirm bisects down (the "bisect-down" rule): to the geometric mean of its rate
//            and the highest standing rate below it (else the highest provisional pass below
//            it; 10% lower when nothing passed), or to that standing rate when it is within
//            10%, and at most to what the failed confirm published; never by halving. A
//            confirm that already fails after 3 judged seconds steps down at once and
//            confirms the lower rate if there is time. Every confirm is a step in the result,
//            saying what came next. A failure below a rate later sustained (a cold start, a
//            stall) is forgotten.
//   backoff  the "probe" rule, in the measured phase: its first PROBE_SECONDS are judged as
//            one window against PROBE_P99_BOUND_SHARE of the bound (the runner calls
//            probeMeasured). When they fail, the rate steps down (to the highest rate a step
//            stood at or above BACKOFF_RATIO of it, else to BACKOFF_RATIO of it), the
//            failed seconds become warm-up, BACKOFF_SETTLE_SECONDS settle at the lower rate,
//            and the measured phase starts again, whole. At most BACKOFFS_MAX times: a run
//            with a 30 s measured phase may take up to 2 × (5 + 2) s longer.
//
// The search fits the warm-up: a step starts only when it ends before the confirm needs the
// rest, so a workload with a 20 s warm-up searches for 12 s, confirms for 6 and sets the
// measured rate 2 s ahead. The measured phase then runs at the rate the search ends with;
// the runner judges that phase again as one window against the whole bound ("sustained" in
// the result).

import {
  BACKLOG_SECONDS_MAX,
  judgeWindow,
  KEEP_UP_RATIO,
  type SustainVerdict,
  type WindowSample,
} from "./sustain.ts";

export const RATE_SEARCH_START_MESSAGES = 10_000;
export const RATE_SEARCH_START_BYTES = 10 * 1024 * 1024;
export const RATE_SEARCH_GROWTH = 2;
export const RATE_SEARCH_PRECISION = 1.1;
export const RATE_MIN = 1;
/** Seconds of a step that are not judged after a rate change, at least... */
export const SETTLE_SECONDS = 1;
/** ...and for the first step of a run (connections and code paths still warming up)... */
export const FIRST_SETTLE_SECONDS = 2;
/** ...and at most, while the producers work off what an overloaded step left behind. */
export const SETTLE_SECONDS_MAX = 5;
/**
 * The headroom rule: the search judges its windows (ramp, bisect, confirm) against this share
 * of the p99 bound. A measured phase of 30-60 s sees more of the tail than a search window of
 * a few seconds: at 80% (the rule before) sluice's 113 k msg/s and RabbitMQ's 9.1 k passed
 * their confirms at p99 ≤ 80 ms and then measured 101 ms and 115-130 ms over 30 s.
 */
export const SEARCH_P99_BOUND_SHARE = 0.5;
export const RAMP_JUDGED_SECONDS = 1;
export const BISECT_JUDGED_SECONDS = 2;
/**
 * The standing rule: a pass stands for a rate (one a failed confirm or probe may fall back
 * to) only when judged over at least this many seconds. A one-second ramp pass at 160k msg/s
 * (2026-12-04, quiet) was followed by confirms failing at 160k and 80k: one second says little
 * about a minute (the page cache and the queues absorb the first seconds of any rate).
 */
export const STANDING_SECONDS_MIN = 2;
/**
 * The drain rule: after a failed step, settling goes on (producers paused) while the
 * machine's dirty page cache (/proc/meminfo Dirty + Writeback) holds more than this many
 * bytes, or more than DIRTY_SETTLE_SECONDS of the new rate's bytes, and is shrinking: the
 * kernel's writeback of what the overload left must not be judged against the next rate.
 */
export const DIRTY_SETTLE_BYTES_MIN = 64 * 1024 * 1024;
export const DIRTY_SETTLE_SECONDS = 1;
/**
 * The end of warm-up kept for the confirm: at least this many seconds, or this share of the
 * warm-up. Its last PRE_MEASURE_SECONDS are not judged: the rate of the measured phase is
 * set when they begin, so what a failed confirm left queued is worked off before measuring.
 */
export const CONFIRM_SECONDS_MIN = 8;
export const CONFIRM_WARMUP_SHARE = 0.3;
export const PRE_MEASURE_SECONDS = 2;
/** The revisit rule: how many times a run judges its converged bound once more. */
export const REVISITS_MAX = 1;
/** A confirm that fails after this many judged seconds steps down at once. */
export const CONFIRM_EARLY_SAMPLES = 3;
/** The probe rule: the measured phase's first seconds, judged as one window... */
export const PROBE_SECONDS = 5;
/** ...against this share of the p99 bound (the longer phase still sees more of the tail). */
export const PROBE_P99_BOUND_SHARE = 0.8;
/** A failed probe steps the rate down to at least this share of it... */
export const BACKOFF_RATIO = 0.8;
/** ...settles this long at the lower rate (counted as warm-up), and measures again... */
export const BACKOFF_SETTLE_SECONDS = 2;
/** ...at most this many times in a run. */
export const BACKOFFS_MAX = 2;

/** The search's rules as figures, saved with the result and shown in the report. */
export type SearchRules = {
  /** The bound on publish p99 the measured phase is judged against, ms. */
  publishP99BoundMs: number;
  /** The headroom rule: search and confirm windows are judged against this p99, ms. */
  searchP99BoundMs: number;
  confirmSeconds: number;
  /** The probe rule: the measured phase's first seconds and their p99 bound, ms. */
  probeSeconds: number;
  probeP99BoundMs: number;
  backoffRatio: number;
  backoffSettleSeconds: number;
  backoffsMax: number;
  /** The standing rule: a pass stands for a rate when judged over this many seconds. */
  standingSecondsMin?: number;
  /** The drain rule: after a failed step, dirty pages over this many bytes are settled. */
  dirtySettleBytesMin?: number;
  /**
   * The retry rule: a ramp or bisect step that failed the headroom rule but passed against
   * this p99 bound (the whole bound, ms) is judged once more before it counts.
   */
  retryP99BoundMs?: number;
  /**
   * The revisit rule: a bisection that converged with time to spare judges its upper bound
   * once more, at most this many times a run.
   */
  revisitsMax?: number;
};

/** The rules in one line, as the report shows them. */
export function describeRules(rules: SearchRules): string {
  const percent = (share: number) => `${Math.round(share * 100)}%`;
  const bound = rules.publishP99BoundMs;
  return (
    `headroom: search and confirm windows need publish p99 ≤ ${rules.searchP99BoundMs} ms ` +
    `(${percent(rules.searchP99BoundMs / bound)} of the ${bound} ms bound) and flat lag, ` +
    `p99 and backlog; confirm: the last ${rules.confirmSeconds} s of warm-up hold the rate ` +
    `as one window; probe: the measured phase's first ${rules.probeSeconds} s need p99 ≤ ` +
    `${rules.probeP99BoundMs} ms, else it backs off to ≥ ${percent(rules.backoffRatio)} of ` +
    `the rate, settles ${rules.backoffSettleSeconds} s and starts again ` +
    `(at most ${rules.backoffsMax} times)` +
    // Results saved before these rules existed do not carry their figures.
    (rules.standingSecondsMin === undefined
      ? ""
      : `; standing: only a pass of ≥ ${rules.standingSecondsMin} judged s is fallen back ` +
        "to, and a failed confirm bisects down") +
    (rules.dirtySettleBytesMin === undefined
      ? ""
      : "; drain: after a failed step, settle while its lag, backlog or dirty pages (over " +
        `${Math.round(rules.dirtySettleBytesMin / 2 ** 20)} MiB) shrink`) +
    (rules.retryP99BoundMs === undefined
      ? ""
      : "; retry: a ramp or bisect step failing only the headroom (its window passes p99 ≤ " +
        `${rules.retryP99BoundMs} ms and the whole allowances) is judged once more before it ` +
        "counts") +
    (rules.revisitsMax === undefined
      ? ""
      : `; revisit: a search that converged with time to spare judges its bound once more ` +
        `(at most ${rules.revisitsMax} a run) and ramps on when it passes`)
  );
}

/** One producer's fixed-rate schedule. */
export class Pacer {
  #ratePerSecond: number;
  #startMs: number;
  #taken = 0;

  constructor(ratePerSecond: number, startMs: number) {
    checkRate(ratePerSecond);
    this.#ratePerSecond = ratePerSecond;
    this.#startMs = startMs;
  }

  get ratePerSecond(): number {
    return this.#ratePerSecond;
  }

  /** Messages taken from this schedule so far. */
  get taken(): number {
    return this.#taken;
  }

  /** Messages whose intended send time is at or before `nowMs` and not yet taken. */
  due(nowMs: number): number {
    const scheduled = Math.floor(((nowMs - this.#startMs) * this.#ratePerSecond) / 1000) + 1;
    return Math.max(0, scheduled - this.#taken);
  }

  /** Takes the next message of the schedule; returns its intended send time. */
  next(): number {
    const intendedMs = this.#startMs + (this.#taken * 1000) / this.#ratePerSecond;
    this.#taken++;
    return intendedMs;
  }

  /** Starts a new schedule at `ratePerSecond` from `nowMs`; what was due and unsent is dropped. */
  restart(ratePerSecond: number, nowMs: number): void {
    checkRate(ratePerSecond);
    this.#ratePerSecond = ratePerSecond;
    this.#startMs = nowMs;
    this.#taken = 0;
  }
}

function checkRate(ratePerSecond: number): void {
  if (!Number.isFinite(ratePerSecond) || ratePerSecond <= 0) {
    throw new RangeError(`rate ${ratePerSecond} msg/s must be a positive number`);
  }
}

export type SearchState = "ramp" | "bisect" | "confirm" | "hold" | "backoff";

/** One step of the search: a rate, its judged window, and the verdict. */
export type RateSearchStep = {
  state: Exclude<SearchState, "hold">;
  rate: number;
  /** Seconds since the first send when the step's rate was set. */
  startSecond: number;
  /** What the judged window showed (sustain.ts); `reasons` is empty when sustained. */
  verdict: SustainVerdict;
  /** What the search did next, in words. */
  next: string;
  /** The step judged again the rate of the step before it, which failed (the retry rule). */
  retry?: true;
  /** The step judged again the bound a converged bisection ended at (the revisit rule). */
  revisit?: true;
};

export type RateSearchOptions = {
  messageSize: number;
  subscriptions: number;
  warmupSeconds: number;
  publishP99MsMax: number;
  /** SustainOptions.heldSeconds: a delayed workload's mean delay. */
  heldSeconds?: number;
};

export class RateSearch {
  readonly steps: RateSearchStep[] = [];
  readonly #options: RateSearchOptions;
  readonly #confirmSeconds: number;
  #rate: number;
  #state: SearchState = "ramp";
  #highestSustained = 0;
  #lowestFailed = Number.POSITIVE_INFINITY;
  /** The judged samples of the current step. */
  #window: WindowSample[] = [];
  /** The settling samples of the current step (judged only if it never settles). */
  #settleWindow: WindowSample[] = [];
  #settling = true;
  #settleMin = FIRST_SETTLE_SECONDS;
  /** Producers pause while an overloaded step's lag, backlog or dirty pages shrink (#settle). */
  #pausing = false;
  /** The current step judges again the rate of a failed step (the retry rule). */
  #retrying = false;
  /** The step before this one failed: its dirty pages are waited for (the drain rule). */
  #afterFailure = false;
  /** The current step judges again the bound of a converged bisection (the revisit rule). */
  #revisiting = false;
  #revisits = 0;
  #stepStartSecond = 0;
  #seconds = 0;
  #backoffs = 0;

  constructor(options: RateSearchOptions) {
    this.#options = options;
    this.#confirmSeconds = Math.max(
      CONFIRM_SECONDS_MIN,
      Math.ceil(CONFIRM_WARMUP_SHARE * options.warmupSeconds),
    );
    this.#rate = Math.max(
      RATE_MIN,
      Math.min(
        RATE_SEARCH_START_MESSAGES,
        Math.floor(RATE_SEARCH_START_BYTES / options.messageSize),
      ),
    );
    // A warm-up too short for one ramp step before the confirm confirms the first rate.
    if (this.#remaining() - this.#stepSeconds("ramp") < this.#confirmSeconds) {
      this.#state = "confirm";
    }
  }

  get rate(): number {
    return this.#rate;
  }

  get state(): SearchState {
    return this.#state;
  }

  /** Whether the current step judges again the rate of a failed step (the retry rule). */
  get retrying(): boolean {
    return this.#retrying;
  }

  get confirmSeconds(): number {
    return this.#confirmSeconds;
  }

  get rules(): SearchRules {
    const bound = this.#options.publishP99MsMax;
    return {
      publishP99BoundMs: bound,
      searchP99BoundMs: SEARCH_P99_BOUND_SHARE * bound,
      confirmSeconds: this.#confirmSeconds,
      probeSeconds: PROBE_SECONDS,
      probeP99BoundMs: PROBE_P99_BOUND_SHARE * bound,
      backoffRatio: BACKOFF_RATIO,
      backoffSettleSeconds: BACKOFF_SETTLE_SECONDS,
      backoffsMax: BACKOFFS_MAX,
      standingSecondsMin: STANDING_SECONDS_MIN,
      dirtySettleBytesMin: DIRTY_SETTLE_BYTES_MIN,
      retryP99BoundMs: this.#options.publishP99MsMax,
      revisitsMax: REVISITS_MAX,
    };
  }

  /** Whether the current step judges again a converged bisection's bound (the revisit rule). */
  get revisiting(): boolean {
    return this.#revisiting;
  }

  /** How many steps judged again a converged bisection's bound (the revisit rule). */
  get revisitedSteps(): number {
    return this.steps.filter((step) => step.revisit === true).length;
  }

  /** How many steps were judged again after a narrow failure (the retry rule). */
  get retriedSteps(): number {
    return this.steps.filter((step) => step.retry === true).length;
  }

  /**
   * The probe rule: judges the measured phase's first seconds (`window`, at the rate the
   * search ended with) against PROBE_P99_BOUND_SHARE of the bound, `windowP99Ms` being their
   * exact p99. When they fail and a backoff is left, records a "backoff" step and returns the
   * lower rate to measure at: the highest rate a step sustained that is at least BACKOFF_RATIO
   * of this one, else BACKOFF_RATIO of it. Otherwise returns undefined: measure on.
   */
  probeMeasured(
    window: readonly WindowSample[],
    at: { startSecond: number; windowP99Ms?: number },
  ): number | undefined {
    if (this.#state !== "hold") throw new Error("probeMeasured: the search has not finished");
    if (window.length === 0 || this.#backoffs >= BACKOFFS_MAX) return undefined;
    const verdict = judgeWindow(window, {
      subscriptions: this.#options.subscriptions,
      publishP99MsMax: PROBE_P99_BOUND_SHARE * this.#options.publishP99MsMax,
      heldSeconds: this.#options.heldSeconds ?? 0,
      ...(at.windowP99Ms === undefined ? {} : { windowP99Ms: at.windowP99Ms }),
    });
    if (verdict.sustained) return undefined;
    this.#backoffs++;
    const floor = Math.max(RATE_MIN, this.#rate * BACKOFF_RATIO);
    const below = this.#sustainedBelow(this.#rate);
    const rate = below !== undefined && below >= floor ? below : floor;
    this.steps.push({
      state: "backoff",
      rate: this.#rate,
      startSecond: at.startSecond,
      verdict,
      next:
        `the measured phase's first ${window.length} s failed: back off to ` +
        `${Math.round(rate)} msg/s, settle ${BACKOFF_SETTLE_SECONDS} s and measure again ` +
        `(backoff ${this.#backoffs} of ${BACKOFFS_MAX})`,
    });
    this.#rate = rate;
    return rate;
  }

  #remaining(): number {
    return this.#options.warmupSeconds - this.#seconds;
  }

  #stepSeconds(state: "ramp" | "bisect"): number {
    return SETTLE_SECONDS + (state === "ramp" ? RAMP_JUDGED_SECONDS : BISECT_JUDGED_SECONDS);
  }

  #judge(window: readonly WindowSample[]): SustainVerdict {
    return judgeWindow(window, {
      subscriptions: this.#options.subscriptions,
      publishP99MsMax: SEARCH_P99_BOUND_SHARE * this.#options.publishP99MsMax,
      heldSeconds: this.#options.heldSeconds ?? 0,
    });
  }

  /**
   * A settling sample ends the settling once the step had its minimum settling seconds and no
   * residue of an earlier step is left: the producers' schedule lag is under the bound's worth
   * of schedule, the consumers' backlog under BACKLOG_SECONDS_MAX of messages, and, after a
   * failed step, the machine's dirty pages under the drain rule's allowance; or after
   * SETTLE_SECONDS_MAX. A figure over its allowance that no longer shrinks is the new rate's
   * own, not a residue: judging it is not unfair. While a residue shrinks the producers pause
   * (observe returns RATE_MIN), so it is worked off as fast as the system can; a pause is
   * followed by a settling second at the step's own rate. A confirm stops waiting once only
   * its reserved judged seconds (#judgedReserve) and PRE_MEASURE_SECONDS are left.
   */
  #settle(sample: WindowSample): void {
    const previous = this.#settleWindow.at(-1);
    this.#settleWindow.push(sample);
    const seconds = this.#settleWindow.length;
    const residue = this.#residue(sample, previous);
    const wasPausing = this.#pausing;
    // The seconds left beyond the pre-measure ones and those the step keeps for judging.
    const spare = this.#remaining() - PRE_MEASURE_SECONDS - this.#judgedReserve();
    this.#pausing =
      residue && seconds < SETTLE_SECONDS_MAX && this.#state !== "hold" && spare > SETTLE_SECONDS;
    if (this.#pausing) return;
    if (wasPausing) this.#settleMin = seconds + SETTLE_SECONDS;
    // A confirm stops waiting for a residue once only its reserved judged seconds are left.
    const waited = seconds >= SETTLE_SECONDS_MAX || (this.#state === "confirm" && spare <= 0);
    if (seconds >= this.#settleMin && (!residue || waited)) this.#settling = false;
  }

  /**
   * The judged seconds a residue may not take from the step: a confirm keeps
   * CONFIRM_EARLY_SAMPLES of them, so that it is never decided on fewer judged seconds because
   * an earlier step left a residue (which would also cost only the brokers that leave one, as
   * dirty pages, the seconds).
   */
  #judgedReserve(): number {
    return this.#state === "confirm" ? CONFIRM_EARLY_SAMPLES : 0;
  }

  /** Whether an earlier step's lag, backlog or dirty pages are still being worked off. */
  #residue(sample: WindowSample, previous: WindowSample | undefined): boolean {
    const rate = this.#rate;
    const shrinking = (now: number, before: number | undefined) =>
      before === undefined || now < before;
    const lagOver = (sample.scheduleLag / rate) * 1000 > this.#options.publishP99MsMax;
    const backlogOver = sample.backlog / (rate * this.#options.subscriptions) > BACKLOG_SECONDS_MAX;
    const dirty = sample.dirtyBytes;
    const dirtyAllowance = Math.max(
      DIRTY_SETTLE_BYTES_MIN,
      DIRTY_SETTLE_SECONDS * rate * this.#options.messageSize,
    );
    const dirtyOver = this.#afterFailure && dirty !== undefined && dirty > dirtyAllowance;
    return (
      (lagOver && shrinking(sample.scheduleLag, previous?.scheduleLag)) ||
      (backlogOver && shrinking(sample.backlog, previous?.backlog)) ||
      (dirtyOver && shrinking(dirty, previous?.dirtyBytes))
    );
  }

  /** Takes one second of warm-up; returns the rate for the next second. */
  observe(sample: WindowSample): number {
    this.#seconds++;
    if (this.#state === "hold") return this.#rate;
    if (this.#settling) {
      this.#settle(sample);
      if (this.#state === "confirm" && this.#remaining() <= PRE_MEASURE_SECONDS) this.#decide();
      if (this.#retrying && this.#settling && this.#remaining() < this.#retryReserve()) {
        this.#dropRetry();
      }
      return this.#pausing ? RATE_MIN : this.#rate;
    }
    this.#window.push(sample);
    if (this.#state === "confirm") {
      this.#checkConfirm();
      return this.#rate;
    }
    const judgedSeconds = this.#state === "ramp" ? RAMP_JUDGED_SECONDS : BISECT_JUDGED_SECONDS;
    if (this.#window.length < judgedSeconds) return this.#rate;
    const verdict = this.#judge(this.#window);
    const step = this.#record(verdict);
    const retry = this.#retryWhy(step);
    if (retry !== undefined) {
      step.next = this.#retry(retry);
      return this.#rate;
    }
    this.#learn(verdict);
    step.next = this.#choose(verdict);
    return this.#rate;
  }

  /**
   * Why a failed ramp or bisect step is judged once more before it counts (the retry rule), or
   * undefined when it counts now: it passed, it was a retry itself, it failed by more than a
   * stalled second explains, or warm-up has no time left for it before the confirm. The
   * run's first step is retried whatever its failure: it also sees the cold start.
   */
  #retryWhy(step: RateSearchStep): string | undefined {
    const verdict = step.verdict;
    if (verdict.sustained || step.retry === true || step.revisit === true) return undefined;
    if (
      this.#remaining() - this.#stepSeconds(this.#state as "ramp" | "bisect") <
      this.#confirmSeconds
    ) {
      return undefined;
    }
    if (this.steps.length === 1) return "the first step may have seen the cold start";
    // Narrow: only the headroom rule's halved allowances failed; the window passes the whole
    // bound, as the measured phase is judged.
    const whole = judgeWindow(this.#window, {
      subscriptions: this.#options.subscriptions,
      publishP99MsMax: this.#options.publishP99MsMax,
      heldSeconds: this.#options.heldSeconds ?? 0,
    });
    if (!whole.sustained) return undefined;
    return "it failed only the headroom's half bound (one stalled second fails a short window)";
  }

  /** The seconds a retry still needs: its judged seconds, then the confirm's. */
  #retryReserve(): number {
    const judged = this.#state === "ramp" ? RAMP_JUDGED_SECONDS : BISECT_JUDGED_SECONDS;
    return judged + this.#confirmSeconds;
  }

  /**
   * A retry still settling (an overload's residue draining) when only its judged seconds and
   * the confirm's are left is dropped: the failure counts as it was judged, and the search
   * goes on from it. The retry never takes seconds from the confirm.
   */
  #dropRetry(): void {
    this.#retrying = false;
    const step = this.steps.at(-1);
    if (step === undefined || step.verdict.sustained) {
      throw new Error("dropRetry: a retry follows a failed step");
    }
    this.#learn(step.verdict);
    step.next += `; dropped, no time left to settle it: ${this.#choose(step.verdict)}`;
  }

  /** Judges the current rate again, from a settling start, as its own step. */
  #retry(why: string): string {
    this.#retrying = true;
    this.#pausing = false;
    this.#afterFailure = true;
    this.#settling = true;
    this.#settleMin = this.steps.length === 1 ? FIRST_SETTLE_SECONDS : SETTLE_SECONDS;
    this.#settleWindow = [];
    this.#window = [];
    this.#stepStartSecond = this.#seconds;
    return `retry ${Math.round(this.#rate)} msg/s: ${why}`;
  }

  #record(verdict: SustainVerdict): RateSearchStep {
    const step: RateSearchStep = {
      state: this.#state as "ramp" | "bisect",
      rate: this.#rate,
      startSecond: this.#stepStartSecond,
      verdict,
      next: "",
      ...(this.#retrying ? { retry: true as const } : {}),
      ...(this.#revisiting ? { revisit: true as const } : {}),
    };
    this.#retrying = false;
    this.#revisiting = false;
    this.steps.push(step);
    return step;
  }

  #learn(verdict: SustainVerdict): void {
    const rate = this.#rate;
    if (verdict.sustained) {
      this.#highestSustained = Math.max(this.#highestSustained, rate);
      // A failure below a sustained rate was a passing disturbance (a cold start, a stall).
      if (rate >= this.#lowestFailed) this.#lowestFailed = Number.POSITIVE_INFINITY;
      return;
    }
    // What an overloaded system managed to publish bounds what it can sustain.
    const achieved = verdict.publishRate < KEEP_UP_RATIO * rate ? verdict.publishRate : rate;
    const floor = this.#highestSustained * RATE_SEARCH_PRECISION;
    this.#lowestFailed = Math.min(this.#lowestFailed, rate, Math.max(achieved, floor));
  }

  /** Picks the next step (or the confirm) and says what it chose. */
  #choose(verdict: SustainVerdict): string {
    const low = this.#highestSustained;
    const high = this.#lowestFailed;
    let next: { state: "ramp" | "bisect"; rate: number };
    if (this.#state === "ramp" && verdict.sustained) {
      next = { state: "ramp", rate: this.#rate * RATE_SEARCH_GROWTH };
    } else if (low === 0) {
      next = { state: "ramp", rate: Math.max(RATE_MIN, high / RATE_SEARCH_GROWTH) };
    } else if (!Number.isFinite(high)) {
      // A revisit passed: its failure is forgotten, and the ramp goes on from it.
      next = { state: "ramp", rate: low * RATE_SEARCH_GROWTH };
    } else if (high / low <= RATE_SEARCH_PRECISION) {
      const within = `within ${Math.round((RATE_SEARCH_PRECISION - 1) * 100)}%`;
      if (this.#revisits < REVISITS_MAX && this.#revisitFits()) {
        return this.#revisit(high, within);
      }
      return this.#startConfirm(within);
    } else {
      next = { state: "bisect", rate: Math.sqrt(low * high) };
    }
    if (this.#remaining() - this.#stepSeconds(next.state) < this.#confirmSeconds) {
      return this.#startConfirm("warm-up left only for the confirm");
    }
    this.#state = next.state;
    this.#setRate(next.rate);
    return `${next.state} at ${Math.round(next.rate)} msg/s`;
  }

  /**
   * A revisit fits when, settling as long as any step may, it still leaves the confirm its
   * seconds and CONFIRM_SECONDS_MIN more: the revisit never takes from a failed confirm the
   * time to confirm the rate it steps down to.
   */
  #revisitFits(): boolean {
    const revisit = SETTLE_SECONDS_MAX + BISECT_JUDGED_SECONDS;
    return this.#remaining() - revisit >= this.#confirmSeconds + CONFIRM_SECONDS_MIN;
  }

  /** Judges a converged bisection's bound once more, as a bisect step (the revisit rule). */
  #revisit(bound: number, within: string): string {
    this.#revisits++;
    this.#state = "bisect";
    this.#setRate(bound);
    this.#revisiting = true;
    return (
      `${within}, with time to spare: revisit ${Math.round(bound)} msg/s (its failure may ` +
      "have been the run's costly first seconds)"
    );
  }

  #setRate(rate: number): void {
    this.#pausing = false;
    this.#retrying = false;
    this.#revisiting = false;
    this.#afterFailure = this.steps.at(-1)?.verdict.sustained === false;
    if (rate !== this.#rate) {
      this.#window = [];
      this.#settleWindow = [];
      this.#settling = true;
      this.#settleMin = SETTLE_SECONDS;
      this.#stepStartSecond = this.#seconds;
    } else {
      // The same rate again (a confirm of the step just judged): its seconds count on.
      this.#settling = false;
    }
    this.#rate = rate;
  }

  #startConfirm(why: string): string {
    const rate = this.#fallbackRate();
    this.#state = "confirm";
    this.#setRate(rate);
    return `${why}: confirm ${Math.round(rate)} msg/s for the rest of warm-up`;
  }

  /** The highest sustained rate; with none, what the last step published (at most its rate). */
  #fallbackRate(): number {
    if (this.#highestSustained > 0) return this.#highestSustained;
    const last = this.steps.at(-1);
    const fallback =
      last === undefined ? this.#rate : Math.min(last.verdict.publishRate, this.#rate);
    return Math.max(RATE_MIN, fallback);
  }

  /**
   * The highest rate below `rate` that a step sustained over at least `secondsMin` judged
   * seconds (STANDING_SECONDS_MIN: a standing rate; 1: any pass, provisional ones included).
   */
  #sustainedBelow(rate: number, secondsMin = STANDING_SECONDS_MIN): number | undefined {
    let highest: number | undefined;
    for (const step of this.steps) {
      const passed = step.verdict.sustained && step.verdict.samples >= secondsMin;
      if (passed && step.rate < rate && (highest === undefined || step.rate > highest)) {
        highest = step.rate;
      }
    }
    return highest;
  }

  /**
   * A confirm second: the confirm is decided once only PRE_MEASURE_SECONDS of warm-up are left;
   * before that, a confirm already failing after CONFIRM_EARLY_SAMPLES judged seconds steps
   * down at once, and confirms the lower rate if there is time.
   */
  #checkConfirm(): void {
    if (this.#remaining() <= PRE_MEASURE_SECONDS) {
      this.#decide();
      return;
    }
    if (this.#window.length < CONFIRM_EARLY_SAMPLES) return;
    const verdict = this.#judge(this.#window);
    if (verdict.sustained) return;
    const step = this.#recordConfirm(verdict);
    const lower = this.#stepDown(step);
    const confirmable =
      this.#remaining() - PRE_MEASURE_SECONDS >= SETTLE_SECONDS + this.#judgedReserve();
    this.#setRate(lower);
    if (confirmable) {
      step.next += "; confirming it";
    } else {
      step.next += "; no time to confirm it";
      this.#state = "hold";
    }
  }

  #recordConfirm(verdict: SustainVerdict): RateSearchStep {
    const step: RateSearchStep = {
      state: "confirm",
      rate: this.#rate,
      startSecond: this.#stepStartSecond,
      verdict,
      next: "",
    };
    this.steps.push(step);
    return step;
  }

  /**
   * The rate after a failed confirm (the bisect-down rule): the geometric mean of the failed
   * rate and the highest standing rate below it (else the highest provisional pass below it),
   * or that standing rate itself when it is within RATE_SEARCH_PRECISION; 10% lower when
   * nothing passed below; never above what the failed window published, unless a standing
   * rate is higher.
   */
  #stepDown(step: RateSearchStep): number {
    const failed = this.#rate;
    const standing = this.#sustainedBelow(failed);
    const floor = standing ?? this.#sustainedBelow(failed, 1);
    let rate: number;
    let how: string;
    if (floor === undefined) {
      rate = failed / RATE_SEARCH_PRECISION;
      how = "10% lower";
    } else if (standing !== undefined && standing * RATE_SEARCH_PRECISION >= failed) {
      rate = standing;
      how = "the standing rate below it";
    } else {
      rate = Math.sqrt(floor * failed);
      how = `bisecting down towards ${Math.round(floor)} msg/s`;
    }
    const published = Math.max(step.verdict.publishRate, standing ?? 0);
    if (step.verdict.publishRate < KEEP_UP_RATIO * failed && published < rate) {
      rate = published;
      how = `${how}, capped at the ${Math.round(published)} msg/s it published`;
    }
    rate = Math.max(RATE_MIN, rate);
    step.next = `confirm failed: measure at ${Math.round(rate)} msg/s (${how})`;
    // A rate that failed its confirm is not sustained, whatever its step said.
    this.#highestSustained = Math.min(this.#highestSustained, rate);
    this.#lowestFailed = Math.min(this.#lowestFailed, failed);
    return rate;
  }

  /** Judges the confirm window and sets the rate of the measured phase; the search ends. */
  #decide(): void {
    const window = this.#window.length > 0 ? this.#window : this.#settleWindow;
    if (window.length > 0) {
      // Without a judged second (a warm-up too short), the settling seconds are judged.
      const verdict = this.#judge(window);
      const step = this.#recordConfirm(verdict);
      if (verdict.sustained) step.next = `measure at ${Math.round(this.#rate)} msg/s`;
      else this.#setRate(this.#stepDown(step));
    }
    this.#state = "hold";
  }

  /** Ends the search when warm-up ends (deciding the confirm if not yet); the rate to measure. */
  finish(): number {
    if (this.#state === "hold") return this.#rate;
    if (this.#state !== "confirm") this.#startConfirm("warm-up ended");
    this.#decide();
    return this.#rate;
  }
}
