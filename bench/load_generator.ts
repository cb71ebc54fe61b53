// The send loop: every producer on its own Pacer schedule, all in one event loop. Each turn
// sends what is due (at most SENDS_PER_TURN_MAX per producer, so acknowledgements and
// consumers get their turn), then sleeps until the next message is due.
//
// Sleeping uses timers, whose resolution is about 1 ms under Bun (2 ms under Deno): at rates
// above 1,000 msg/s a turn sends the messages of the last millisecond or so together, and each
// waits up to that long after its intended time. The wait is part of the latencies (they count
// from the intended time) and is reported on its own as the publish delay. Spinning instead
// would take a whole core from the system under test on a small machine.
//
// A producer never has more than `inFlightMax` unacknowledged sends; a producer at its limit
// stops sending and its schedule runs on, so the messages it sends once acknowledgements come
// back are late, and their latency, measured from the intended time, says so. The limit is
// the smaller of a share of 32 MiB and, with `inFlightSeconds`, that many seconds of the
// producer's rate: a rate that needs more in flight than that breaks the latency bound anyway,
// and an overloaded search step then leaves less queued behind it for the next.

import { setImmediate } from "node:timers";
import type { BenchProducer } from "./driver.ts";
import type { SendRecorder } from "./load_stats.ts";
import type { KeySource, PayloadSource } from "./payload.ts";
import { Pacer } from "./rate_control.ts";

/** Unacknowledged bytes over all producers; each producer gets an equal share. */
export const IN_FLIGHT_BYTES_MAX = 32 * 1024 * 1024;
export const IN_FLIGHT_MESSAGES_MIN = 64;
export const SENDS_PER_TURN_MAX = 1_000;

type ProducerSlot = {
  producer: BenchProducer;
  pacer: Pacer;
  inFlight: number;
  /** Messages taken from this producer's earlier schedules (before the last rate change). */
  takenBefore: number;
};

export type LoadGeneratorOptions = {
  producers: readonly BenchProducer[];
  payloads: PayloadSource;
  keys: KeySource;
  stats: SendRecorder;
  /** Messages per second over all producers. */
  ratePerSecond: number;
  /** Unacknowledged sends allowed per producer (default: its share of IN_FLIGHT_BYTES_MAX). */
  inFlightMax?: number;
  /** Also at most this many seconds of each producer's rate in flight (default: no limit). */
  inFlightSeconds?: number;
  /**
   * Each message is delayed uniformly in [0, this] ms (sendAsync's delayMs) and stamped with
   * its due time, so end-to-end latency measures lateness (default 0: no delays).
   */
  deliveryDelayMsMax?: number;
  /** The clock, in ms (default performance.now); tests drive their own. */
  now?: () => number;
};

export class LoadGenerator {
  /** The limit from bytes (or as given); the rate's limit may be lower. */
  readonly inFlightBytesLimit: number;
  #inFlightSeconds: number;
  #inFlightMax: number;
  #slots: ProducerSlot[];
  #payloads: PayloadSource;
  #keys: KeySource;
  #stats: SendRecorder;
  #now: () => number;
  #running = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #ratePerSecond: number;
  #deliveryDelayMsMax: number;

  constructor(options: LoadGeneratorOptions) {
    this.#deliveryDelayMsMax = options.deliveryDelayMsMax ?? 0;
    const { producers } = options;
    if (producers.length === 0) throw new RangeError("a load generator needs a producer");
    this.#now = options.now ?? (() => performance.now());
    const start = this.#now();
    this.#ratePerSecond = options.ratePerSecond;
    const each = options.ratePerSecond / producers.length;
    this.#slots = producers.map((producer) => ({
      producer,
      pacer: new Pacer(each, start),
      inFlight: 0,
      takenBefore: 0,
    }));
    this.#payloads = options.payloads;
    this.#keys = options.keys;
    this.#stats = options.stats;
    const share = Math.floor(IN_FLIGHT_BYTES_MAX / producers.length / options.payloads.messageSize);
    this.inFlightBytesLimit = options.inFlightMax ?? Math.max(IN_FLIGHT_MESSAGES_MIN, share);
    if (!Number.isSafeInteger(this.inFlightBytesLimit) || this.inFlightBytesLimit < 1) {
      throw new RangeError(`inFlightMax ${this.inFlightBytesLimit} must be a positive integer`);
    }
    this.#inFlightSeconds = options.inFlightSeconds ?? Number.POSITIVE_INFINITY;
    if (!(this.#inFlightSeconds > 0)) {
      throw new RangeError(`inFlightSeconds ${this.#inFlightSeconds} must be positive`);
    }
    this.#inFlightMax = this.#limitFor(options.ratePerSecond);
  }

  get ratePerSecond(): number {
    return this.#ratePerSecond;
  }

  /** Unacknowledged sends allowed per producer at the current rate. */
  get inFlightMax(): number {
    return this.#inFlightMax;
  }

  #limitFor(ratePerSecond: number): number {
    const perProducer = ratePerSecond / this.#slots.length;
    const byRate = Math.ceil(perProducer * this.#inFlightSeconds);
    return Math.max(
      Math.min(IN_FLIGHT_MESSAGES_MIN, this.inFlightBytesLimit),
      Math.min(this.inFlightBytesLimit, byRate),
    );
  }

  /** Restarts every producer's schedule at a new total rate from now. */
  setRate(ratePerSecond: number): void {
    const now = this.#now();
    this.#ratePerSecond = ratePerSecond;
    this.#inFlightMax = this.#limitFor(ratePerSecond);
    for (const slot of this.#slots) {
      slot.takenBefore += slot.pacer.taken;
      slot.pacer.restart(ratePerSecond / this.#slots.length, now);
    }
    // A loop asleep until the old schedule's next message (seconds, at a low rate) wakes now;
    // a turn already pending (no timer) sees the new schedule by itself.
    if (this.#running && this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = setTimeout(this.#turn, 0);
    }
  }

  /**
   * Messages due by every producer's schedule up to now, sent or not (what a rate change
   * dropped unsent is not counted): the schedule lag is this less what was acknowledged.
   */
  scheduled(): number {
    if (!this.#running)
      return this.#slots.reduce((sum, s) => sum + s.takenBefore + s.pacer.taken, 0);
    const now = this.#now();
    let sum = 0;
    for (const slot of this.#slots) {
      sum += slot.takenBefore + slot.pacer.taken + slot.pacer.due(now);
    }
    return sum;
  }

  start(): void {
    this.#running = true;
    this.setRate(this.#ratePerSecond);
    this.#turn();
  }

  stop(): void {
    // What was due and unsent when sending stops is dropped, as at a rate change.
    for (const slot of this.#slots) {
      slot.takenBefore += slot.pacer.taken;
      slot.pacer.restart(slot.pacer.ratePerSecond, this.#now());
    }
    this.#running = false;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Sends what is due now; returns ms until the next send is due (0: more is due now). */
  sendDue(): number {
    const now = this.#now();
    let waitMs = Number.POSITIVE_INFINITY;
    for (const slot of this.#slots) {
      const due = slot.pacer.due(now);
      const room = this.#inFlightMax - slot.inFlight;
      const count = Math.min(due, room, SENDS_PER_TURN_MAX);
      for (let i = 0; i < count; i++) this.#send(slot, slot.pacer.next(), now);
      if (due > count && room > count) {
        waitMs = 0;
      } else if (due > count) {
        // At its in-flight limit: look again shortly (an acknowledgement frees room).
        waitMs = Math.min(waitMs, 1);
      } else {
        waitMs = Math.min(waitMs, 1000 / slot.pacer.ratePerSecond);
      }
    }
    return waitMs;
  }

  #turn = (): void => {
    this.#timer = undefined;
    if (!this.#running) return;
    const waitMs = this.sendDue();
    if (!this.#running) return;
    // Either way the loop yields to I/O, so acknowledgements and consumers run in between.
    if (waitMs === 0) setImmediate(this.#turn);
    else this.#timer = setTimeout(this.#turn, Math.floor(waitMs));
  };

  #send(slot: ProducerSlot, intendedMs: number, nowMs: number): void {
    const stats = this.#stats;
    const delayMs =
      this.#deliveryDelayMsMax > 0 ? Math.floor(Math.random() * (this.#deliveryDelayMsMax + 1)) : 0;
    // Stamped with the due time: the consumer's end-to-end latency is then the lateness.
    const payload = this.#payloads.next(intendedMs + delayMs);
    const bytes = payload.length;
    slot.inFlight++;
    stats.recordSend(nowMs - intendedMs);
    let sending: Promise<void>;
    try {
      sending =
        delayMs > 0
          ? slot.producer.sendAsync(this.#keys.next(), payload, delayMs)
          : slot.producer.sendAsync(this.#keys.next(), payload);
    } catch (error) {
      slot.inFlight--;
      stats.recordError(error);
      return;
    }
    sending.then(
      () => {
        slot.inFlight--;
        // Acknowledged: the driver holds it no more, and its bytes may be carved again.
        this.#payloads.release(payload);
        stats.recordAck(this.#now() - intendedMs, bytes);
      },
      (error: unknown) => {
        slot.inFlight--;
        stats.recordError(error);
      },
    );
  }
}
