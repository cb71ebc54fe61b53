// Keeps the locks of messages handed out and not answered yet (QueueConsumer's `renewLocks`):
// each is renewed once half of its lock has run, so slow work keeps its records however long
// it takes, while a consumer that dies still gives them back (the renewals stop with it).
//
//   acquired ──lockMs/2──► renew ──lockMs/2──► renew ... ──► accept | release | reject: forgotten
//
// Checked every lockMs/4. Messages held at once are bounded by the queue's prefetch; a renew
// the broker refuses (the member is gone, the lock already ran out) forgets the message.

import type { QueueMessage } from "./queue_message.ts";

/** The earliest a check runs again, whatever the lock. */
const CHECK_INTERVAL_MS_MIN = 50;

export class LockRenewer {
  /** Message → when its lock last started, and for how long it runs. */
  readonly #held = new Map<QueueMessage, { sinceMs: number; lockMs: number }>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #intervalMs = Number.POSITIVE_INFINITY;
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  get size(): number {
    return this.#held.size;
  }

  track(message: QueueMessage, lockMs: number): void {
    this.#held.set(message, { sinceMs: this.#now(), lockMs });
    const intervalMs = Math.max(CHECK_INTERVAL_MS_MIN, Math.floor(lockMs / 4));
    if (intervalMs < this.#intervalMs) {
      this.#intervalMs = intervalMs;
      if (this.#timer !== undefined) clearInterval(this.#timer);
      this.#timer = setInterval(() => this.check(), intervalMs);
      (this.#timer as { unref?: () => void }).unref?.();
    }
  }

  /** The message got its final answer: its lock is none of this class's business any more. */
  forget(message: QueueMessage): void {
    this.#held.delete(message);
  }

  /** Renews every lock that is half run; returns how many it renewed. */
  check(): number {
    const nowMs = this.#now();
    let renewed = 0;
    for (const [message, lock] of this.#held) {
      if (nowMs - lock.sinceMs < lock.lockMs / 2) continue;
      lock.sinceMs = nowMs;
      renewed++;
      message.renew().catch(() => this.#held.delete(message));
    }
    return renewed;
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#held.clear();
  }
}
