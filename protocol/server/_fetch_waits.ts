// Long-polling fetches waiting for data (PROTOCOL.md section 6), kept so that a waiting fetch
// costs no timer and no data listener of its own: each partition log has one data listener
// however many fetches wait on it, and one timer serves every waiting fetch's deadline.
//
//   append ──► PartitionLog data listener (one per log) ──► the waiters on the log are woken
//              ──► (a microtask queued by the first) ──► onData() of each, once
//   timer (one, due at the earliest deadline) ──► onTimeUp() of each waiter past its deadline
//
// Why not at once: one Produce request usually carries batches for several partitions, and
// their logs' flush rounds all finish in the turn that handled it, one after another. A fetch
// answered at the first log's data went out with that partition alone and the consumer
// fetched the others a round trip later (bench:tcp's latency phase: 44 % of the consumer's
// polls carried one partition, most of the rest 9-11). Each log starts its round in a
// microtask queued as the request appended to it, and a round of a few KiB completes in that
// microtask (partition_log.ts #nextRound), so a wake-up queued by the first round's data runs
// after every round the request started: the fetch takes all of them, in one answer, in the
// same turn. (It was a setImmediate: one more pass of the event loop, where other sockets'
// reads and timers went first, between the data and the answer.) A round that waits for the
// thread pool publishes in a later turn and wakes the fetches again then.
//
// A log's listener, once added, stays for the log's life: a consumer's fetch names every
// partition it owns (250 each for 4 consumers of 1,000 partitions), and adding and removing
// that many listeners on each wait was a tenth of the broker's samples at 1,000 partitions. A
// listener with no waiter left does nothing.
//
// Deadlines live in a binary min-heap that knows each waiter's place, so a fetch answered by
// data leaves it at once (a waiter kept until its deadline would outlive a young-generation
// collection for nothing). A waiter leaves by remove(); the heap never holds a settled one.
//
// No Set or Map holds a waiter, only arrays that know each waiter's place: JavaScriptCore's
// Set and Map keep what was deleted from them reachable for the young-generation collection
// until the next full one, and a waiter holds its fetch's request frame, a view of a 256 KiB
// slab of received bytes (record/slab.ts). One fetch per slab was enough to carry every slab
// into the old generation: the broker's heap grew ~17 MB per young collection at bench:tcp's
// 10,000 msg/s and needed a full collection every few seconds (bench/RESULTS.md, issue 16).

import { assert } from "../../record/mod.ts";
import type { PartitionLog } from "../../engine/mod.ts";

export interface FetchWaiter {
  readonly logs: readonly PartitionLog[];
  /** performance.now() time at which the wait ends. */
  readonly deadlineMs: number;
  /** The waiter's place in the deadline heap, -1 when not waiting (kept by FetchWaits). */
  heapIndex: number;
  /** Queued to be told of new data at the next wake-up (kept by FetchWaits). */
  woken?: boolean;
  /**
   * For each of its logs (by position in `logs`), its place among that log's further waiters,
   * -1 where it is the log's first (kept by FetchWaits; made when it first waits behind one).
   */
  moreAt?: number[] | undefined;
  /** New data on one of its logs (told after the rounds that wrote it; never throws). */
  onData(): void;
  /** Its deadline passed, or the server is shutting down. */
  onTimeUp(): void;
}

/**
 * The waiters of one log and the one listener it calls; kept while the log lives. Most logs
 * have one waiter at a time (the consumer that owns the partition): it takes the slot, and
 * only further ones the `more` array, where `moreLogAt[i]` is the position of this log in
 * `more[i]`'s logs (so that the waiter moved into a freed place can be told its new one).
 */
type LogWaiters = {
  first: FetchWaiter | undefined;
  more: FetchWaiter[];
  moreLogAt: number[];
  listener: () => void;
};

/** A woken waiter that is still waiting (it may have answered already) hears of the data. */
function tellWaiter(waiter: FetchWaiter): void {
  if (waiter.heapIndex !== -1) waiter.onData();
}

/** Takes the waiter at `index` out of `entry.more`, the last one moving into its place. */
function removeMore(entry: LogWaiters, index: number): void {
  const { more, moreLogAt } = entry;
  const last = more.length - 1;
  if (index !== last) {
    const moved = more[last]!;
    const movedLogAt = moreLogAt[last]!;
    more[index] = moved;
    moreLogAt[index] = movedLogAt;
    moved.moreAt![movedLogAt] = index;
  }
  more.pop();
  moreLogAt.pop();
}

export class FetchWaits {
  #logs = new WeakMap<PartitionLog, LogWaiters>();
  #heap: FetchWaiter[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerDueMs = Number.POSITIVE_INFINITY;
  #now: () => number;
  #onTimer = () => this.#expire();
  /** Waiters with new data since the last wake-up, told at the next (two lists, swapped). */
  #woken: FetchWaiter[] = [];
  #waking: FetchWaiter[] = [];
  #wakeScheduled = false;
  #onWakeUp = () => this.#wakeAll();

  /**
   * `shutdownHooks` is where the server finds what to end at shutdown: timeUpAll goes there,
   * which answers every waiting fetch and stops the timer.
   */
  constructor(
    shutdownHooks: { add(hook: () => void): unknown },
    now: () => number = () => performance.now(),
  ) {
    shutdownHooks.add(() => this.timeUpAll());
    this.#now = now;
  }

  /** Fetches waiting now. */
  get size(): number {
    return this.#heap.length;
  }

  add(waiter: FetchWaiter): void {
    assert(waiter.heapIndex === -1, "a fetch waits once at a time");
    waiter.woken = false;
    waiter.moreAt = undefined;
    const { logs } = waiter;
    for (let at = 0; at < logs.length; at++) {
      const entry = this.#entry(logs[at]!);
      if (entry.first === undefined) {
        entry.first = waiter;
        continue;
      }
      waiter.moreAt ??= new Array<number>(logs.length).fill(-1);
      waiter.moreAt[at] = entry.more.length;
      entry.more.push(waiter);
      entry.moreLogAt.push(at);
    }
    waiter.heapIndex = this.#heap.length;
    this.#heap.push(waiter);
    this.#siftUp(waiter.heapIndex);
    if (waiter.deadlineMs < this.#timerDueMs) this.#arm(waiter.deadlineMs);
  }

  /** Stops the waiter's wait; a waiter not waiting is left as it is. */
  remove(waiter: FetchWaiter): void {
    const index = waiter.heapIndex;
    if (index === -1) return;
    // A woken waiter stays in #woken until the wake-up, which tells only waiters still waiting.
    const { logs, moreAt } = waiter;
    for (let at = 0; at < logs.length; at++) {
      const entry = this.#logs.get(logs[at]!)!;
      if (entry.first === waiter) entry.first = undefined;
      else if (moreAt !== undefined && moreAt[at]! >= 0) removeMore(entry, moreAt[at]!);
    }
    waiter.moreAt = undefined;
    const last = this.#heap.pop()!;
    waiter.heapIndex = -1;
    if (last !== waiter) {
      this.#heap[index] = last;
      last.heapIndex = index;
      this.#siftDown(index);
      this.#siftUp(last.heapIndex);
    }
    // With no fetch waiting the timer is left as it is: the next fetch's deadline is nearly
    // always later, so it arms no timer of its own, and the timer finding nothing due when
    // it fires arms the next. A tailing consumer's polls then cost one timer per wait length,
    // not one each.
  }

  /** Ends every wait now and stops the timer (shutdown): each waiter answers what there is. */
  timeUpAll(): void {
    // Each waiter removes itself as it answers: the heap's first is always the next to go.
    for (let left = this.#heap.length; left > 0 && this.#heap.length > 0; left--) {
      const waiter = this.#heap[0]!;
      waiter.onTimeUp();
      assert(waiter.heapIndex === -1, "a fetch whose time is up stops waiting");
    }
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerDueMs = Number.POSITIVE_INFINITY;
    // A wake-up already queued finds no waiter left to tell.
    for (const waiter of this.#woken) waiter.woken = false;
    this.#woken.length = 0;
  }

  #entry(log: PartitionLog): LogWaiters {
    let entry = this.#logs.get(log);
    if (entry === undefined) {
      const created: LogWaiters = {
        first: undefined,
        more: [],
        moreLogAt: [],
        listener: () => {},
      };
      created.listener = () => this.#wake(created);
      this.#logs.set(log, created);
      // Kept for the log's life (see the top of this file); a closed log calls no listener.
      log.onData(created.listener);
      entry = created;
    }
    return entry;
  }

  /** New data on a log: its waiters are told after the rounds that wrote data (a microtask). */
  #wake(entry: LogWaiters): void {
    const { first, more } = entry;
    if (first === undefined && more.length === 0) return;
    if (first !== undefined) this.#queueWake(first);
    for (let i = 0; i < more.length; i++) this.#queueWake(more[i]!);
    if (this.#wakeScheduled) return;
    this.#wakeScheduled = true;
    queueMicrotask(this.#onWakeUp);
  }

  #queueWake(waiter: FetchWaiter): void {
    if (waiter.woken === true) return;
    waiter.woken = true;
    this.#woken.push(waiter);
  }

  /** After the rounds that wrote data: each waiter woken by it is told once. */
  #wakeAll(): void {
    this.#wakeScheduled = false;
    const waking = this.#woken;
    this.#woken = this.#waking;
    this.#waking = waking;
    // A waiter answering leaves the heap as it goes; data arriving while these are told wakes
    // its waiters in the next wake-up (each is marked unwoken before it is told).
    for (let i = 0; i < waking.length; i++) {
      const waiter = waking[i]!;
      waiter.woken = false;
      tellWaiter(waiter);
    }
    waking.length = 0;
  }

  #arm(dueMs: number): void {
    clearTimeout(this.#timer);
    this.#timerDueMs = dueMs;
    // A timer may fire a little before its time on the clock read here: never a wait of 0 ms.
    this.#timer = setTimeout(this.#onTimer, Math.max(1, Math.ceil(dueMs - this.#now())));
  }

  #expire(): void {
    this.#timer = undefined;
    this.#timerDueMs = Number.POSITIVE_INFINITY;
    const now = this.#now();
    while (this.#heap.length > 0 && this.#heap[0]!.deadlineMs <= now) {
      const waiter = this.#heap[0]!;
      waiter.onTimeUp();
      assert(waiter.heapIndex === -1, "a fetch whose time is up stops waiting");
    }
    const next = this.#heap[0];
    if (next !== undefined) this.#arm(next.deadlineMs);
  }

  #siftUp(from: number): void {
    const heap = this.#heap;
    let index = from;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (heap[parent]!.deadlineMs <= heap[index]!.deadlineMs) return;
      this.#swap(index, parent);
      index = parent;
    }
  }

  #siftDown(from: number): void {
    const heap = this.#heap;
    let index = from;
    for (;;) {
      const left = 2 * index + 1;
      const right = left + 1;
      let smallest = index;
      if (left < heap.length && heap[left]!.deadlineMs < heap[smallest]!.deadlineMs) {
        smallest = left;
      }
      if (right < heap.length && heap[right]!.deadlineMs < heap[smallest]!.deadlineMs) {
        smallest = right;
      }
      if (smallest === index) return;
      this.#swap(index, smallest);
      index = smallest;
    }
  }

  #swap(a: number, b: number): void {
    const heap = this.#heap;
    const first = heap[a]!;
    const second = heap[b]!;
    heap[a] = second;
    heap[b] = first;
    second.heapIndex = a;
    first.heapIndex = b;
  }
}
