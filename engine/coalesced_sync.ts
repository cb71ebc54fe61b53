// One log's fdatasyncs, coalesced: one under way and at most one queued behind it. A caller
// is covered by a sync that starts after its call (bytes it wrote before calling are then on
// disk), so a call made while a sync runs waits for the queued one, which every such caller
// shares. The delay tiers (queue_delay.ts) sync each tier log this way: every add() and every
// positions save used to issue an fdatasync per tier it touched, however many were already
// under way for the same file.
//
//   call ─► none under way ─► start ────────────────► resolves with it
//   call ─► one under way  ─► the queued one (made by the first such call, started when the
//                              running one ends) ────► resolves with it

import { assert } from "../record/mod.ts";

export class CoalescedSync {
  readonly #sync: () => Promise<void>;
  #running: Promise<void> | undefined;
  #queued: Promise<void> | undefined;
  /** fdatasyncs started, for tests and counters. */
  started = 0;

  constructor(sync: () => Promise<void>) {
    this.#sync = sync;
  }

  sync(): Promise<void> {
    const running = this.#running;
    if (running === undefined) return this.#start();
    this.#queued ??= running.then(noop, noop).then(() => {
      this.#queued = undefined;
      return this.#start();
    });
    return this.#queued;
  }

  #start(): Promise<void> {
    this.started++;
    const running = this.#sync();
    this.#running = running;
    const clear = () => {
      if (this.#running === running) this.#running = undefined;
    };
    running.then(clear, clear);
    assert(this.#running !== undefined, "a started sync is under way");
    return running;
  }
}

function noop(): void {}
