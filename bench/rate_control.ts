// How fast producers send. A Pacer holds one producer to a fixed-rate schedule: message k of
// the schedule is due at startMs + k × 1000 / rate. A send that leaves late (the producer was
// blocked by its in-flight limit, or the event loop was busy) still counts its latency from
// the intended time, so a stall of the system shows up in the percentiles instead of
// silently lowering the send rate: the "coordinated omission" correction OMB and wrk2 make.
//
// With producerRate 0 a RateSearch picks the rate during warm-up. Each rate it tries runs for
// two seconds: the first lets queues settle after the change and is not judged, the second
// is judged "sustained" or not:
//
//   ramp:    start at min(10,000 msg/s, 10 MB/s), double while the rate is sustained;
//   bisect:  after the first unsustained rate, try the geometric mean of the highest
//            sustained and lowest unsustained rates, until they are within 10%;
//   hold:    from then on, and at the latest when warm-up ends, the highest sustained rate.
//
// A rate is sustained when, in its judged second, the producers achieved ≥ 95% of it,
// consumers received ≥ 95% of what was published (per subscription), the backlog stayed under
// half a second of messages, and publish p99 (from intended send times) stayed under 100 ms.

export const RATE_SEARCH_START_MESSAGES = 10_000;
export const RATE_SEARCH_START_BYTES = 10 * 1024 * 1024;
export const RATE_SEARCH_GROWTH = 2;
export const RATE_SEARCH_PRECISION = 1.1;
export const RATE_SEARCH_KEEP_UP_RATIO = 0.95;
export const RATE_SEARCH_BACKLOG_SECONDS_MAX = 0.5;
export const RATE_SEARCH_PUBLISH_P99_MS_MAX = 100;
export const RATE_MIN = 1;

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

/** What one second of a run showed, as the search reads it. */
export type RateObservation = {
  targetRate: number;
  publishRate: number;
  consumeRate: number;
  backlog: number;
  publishP99Ms: number;
};

export type RateSearchStep = RateObservation & {
  state: "ramp" | "bisect";
  /** The first second at a new rate: recorded, not judged. */
  settling: boolean;
  sustained: boolean;
  /** Why it was not sustained; empty when it was (or while settling). */
  reason: string;
};

export type RateSearchState = "ramp" | "bisect" | "hold";

export class RateSearch {
  readonly subscriptions: number;
  readonly steps: RateSearchStep[] = [];
  #rate: number;
  #state: RateSearchState = "ramp";
  #highestSustained = 0;
  #settling = true;
  #lowestUnsustained = Number.POSITIVE_INFINITY;

  constructor(messageSize: number, subscriptions: number) {
    this.subscriptions = subscriptions;
    this.#rate = Math.max(
      RATE_MIN,
      Math.min(RATE_SEARCH_START_MESSAGES, Math.floor(RATE_SEARCH_START_BYTES / messageSize)),
    );
  }

  get rate(): number {
    return this.#rate;
  }

  get state(): RateSearchState {
    return this.#state;
  }

  /** Why a second was not sustained, or "" when it was. */
  static verdict(observation: RateObservation, subscriptions: number): string {
    const { targetRate, publishRate, consumeRate, backlog, publishP99Ms } = observation;
    const reasons: string[] = [];
    if (publishRate < RATE_SEARCH_KEEP_UP_RATIO * targetRate) {
      reasons.push(`published ${Math.round(publishRate)} of ${Math.round(targetRate)} msg/s`);
    }
    if (consumeRate < RATE_SEARCH_KEEP_UP_RATIO * publishRate * subscriptions) {
      reasons.push(`consumed ${Math.round(consumeRate)} msg/s`);
    }
    const backlogMax = RATE_SEARCH_BACKLOG_SECONDS_MAX * targetRate * subscriptions;
    if (backlog > Math.max(backlogMax, 1)) reasons.push(`backlog ${backlog}`);
    if (publishP99Ms > RATE_SEARCH_PUBLISH_P99_MS_MAX) {
      reasons.push(`publish p99 ${publishP99Ms.toFixed(1)} ms`);
    }
    return reasons.join(", ");
  }

  /** Takes one second's observation; returns the rate for the next second. */
  observe(observation: RateObservation): number {
    if (this.#state === "hold") return this.#rate;
    if (this.#settling) {
      this.#settling = false;
      this.steps.push({
        ...observation,
        state: this.#state,
        settling: true,
        sustained: false,
        reason: "",
      });
      return this.#rate;
    }
    this.#settling = true;
    const reason = RateSearch.verdict(observation, this.subscriptions);
    const sustained = reason === "";
    this.steps.push({ ...observation, state: this.#state, settling: false, sustained, reason });
    const rate = observation.targetRate;
    if (sustained) this.#highestSustained = Math.max(this.#highestSustained, rate);
    else this.#lowestUnsustained = Math.min(this.#lowestUnsustained, rate);
    if (this.#state === "ramp" && sustained) {
      this.#rate = rate * RATE_SEARCH_GROWTH;
      return this.#rate;
    }
    this.#state = "bisect";
    const low = this.#highestSustained;
    const high = this.#lowestUnsustained;
    if (low > 0 && high / low <= RATE_SEARCH_PRECISION) return this.hold();
    // Below the first rate tried, halve until something is sustained.
    this.#rate = low > 0 ? Math.sqrt(low * high) : Math.max(RATE_MIN, high / RATE_SEARCH_GROWTH);
    return this.#rate;
  }

  /**
   * Ends the search: the highest sustained rate from now on. When no second was sustained,
   * the last second's achieved publish rate (never more than the target it had).
   */
  hold(): number {
    if (this.#state !== "hold") {
      this.#state = "hold";
      const last = this.steps.findLast((step) => !step.settling) ?? this.steps.at(-1);
      const fallback = last === undefined ? this.#rate : Math.min(last.publishRate, this.#rate);
      this.#rate = Math.max(
        RATE_MIN,
        this.#highestSustained > 0 ? this.#highestSustained : fallback,
      );
    }
    return this.#rate;
  }
}
