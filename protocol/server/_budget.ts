// The broker-wide budget of answer bytes waiting for sockets (`connectionBuffersBytesMax`).
// Each connection already stops reading once its own answers pass `outboxBytesMax`; this
// budget bounds the sum, so that many slow consumers together cannot exhaust memory. While it
// is exhausted, every connection that still has answers waiting stops reading new requests
// (answers in progress are still written; connections with nothing waiting go on); each is
// woken once the sum falls back under the limit.
//
//   connection ──adjust(+n)──► budget.bytes > bytesMax ──► connections pause, wait(resume)
//   socket drains ──adjust(−n)──► bytes ≤ bytesMax ──► every waiting connection re-checks

import { assert } from "../../record/mod.ts";

export class BufferBudget {
  readonly bytesMax: number;
  #bytes = 0;
  #waiting = new Set<() => void>();

  constructor(bytesMax: number) {
    assert(Number.isSafeInteger(bytesMax) && bytesMax > 0, "a positive budget");
    this.bytesMax = bytesMax;
  }

  /** Answer bytes waiting for sockets, over every connection. */
  get bytes(): number {
    return this.#bytes;
  }

  get exhausted(): boolean {
    return this.#bytes > this.bytesMax;
  }

  /** A connection's waiting bytes changed by `delta`. */
  adjust(delta: number): void {
    this.#bytes += delta;
    assert(this.#bytes >= 0, "waiting bytes never go negative");
    if (delta >= 0 || this.exhausted || this.#waiting.size === 0) return;
    const waiting = [...this.#waiting];
    this.#waiting.clear();
    for (const resume of waiting) resume();
  }

  /** Calls `resume` once, when the budget has room again. */
  wait(resume: () => void): void {
    this.#waiting.add(resume);
  }

  forget(resume: () => void): void {
    this.#waiting.delete(resume);
  }
}
