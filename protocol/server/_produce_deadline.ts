// The deadline of an acks=all Produce (`timeout_ms`, PROTOCOL.md section 5), shared by both
// listeners. As in Kafka, a partition whose batches are not durable when the request's
// timeout_ms has passed is answered with REQUEST_TIMED_OUT; its append is not withdrawn and
// goes on, so the batches may still become durable (and readable) after that answer. One
// timer serves every partition of a request, and it is cleared once every partition answered.
//
// A request pays one `.then` per partition (recording its answer in a slot) and one promise
// per topic; the timer, when it fires, sets the request's one timed-out flag and fills the
// slots still empty. Racing each partition's append against a promise of the deadline costs
// three promises and their closures per partition instead.

/**
 * setTimeout fires at once for a delay past 2^31 - 1 ms (about 24.8 days); timeout_ms is a u32
 * on the wire (an i32 on Kafka's), so longer timeouts wait this long.
 */
export const PRODUCE_TIMEOUT_MS_MAX = 2 ** 31 - 1;

/** The deadline of one request: a timer, a timed-out flag, and what to do when it fires. */
export class ProduceDeadline {
  readonly timeoutMs: number;
  #expired = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #onExpire: (() => void)[] = [];

  constructor(timeoutMs: number) {
    this.timeoutMs = timeoutMs;
    this.#timer = setTimeout(() => this.#expire(), timeoutMs);
  }

  /** True once the deadline passed (and it was not cancelled before). */
  get expired(): boolean {
    return this.#expired;
  }

  /** Stops the timer; called once every partition of the request answered. */
  cancel(): void {
    clearTimeout(this.#timer);
    this.#onExpire.length = 0;
  }

  /** Runs `callback` when the deadline passes, unless cancelled first. */
  whenExpired(callback: () => void): void {
    this.#onExpire.push(callback);
  }

  #expire(): void {
    this.#expired = true;
    const callbacks = this.#onExpire;
    this.#onExpire = [];
    for (const callback of callbacks) callback();
  }
}

/** Starts the deadline of one request; a negative timeout (Kafka's i32) counts as 0. */
export function startProduceDeadline(timeoutMs: number): ProduceDeadline {
  return new ProduceDeadline(Math.min(Math.max(0, timeoutMs), PRODUCE_TIMEOUT_MS_MAX));
}

/**
 * Every partition's answer (`pending`, in order), or, for the partitions that have not answered
 * when the deadline passes, `timedOut(index)`. An answer that comes after the deadline is handed
 * to `late` (to log a failure nobody was told of). A rejected append (a broken invariant)
 * rejects the whole, as Promise.all does.
 */
export function answersWithin<T>(
  pending: readonly (T | Promise<T>)[],
  deadline: ProduceDeadline,
  answers: { timedOut: (index: number) => T; late: (answer: T, index: number) => void },
): Promise<T[]> {
  const results: (T | undefined)[] = new Array(pending.length).fill(undefined);
  const answered: boolean[] = new Array(pending.length).fill(false);
  let left = pending.length;
  if (left === 0) return Promise.resolve([]);
  return new Promise<T[]>((resolve, reject) => {
    const record = (index: number, answer: T) => {
      if (deadline.expired) {
        answers.late(answer, index);
        return;
      }
      results[index] = answer;
      answered[index] = true;
      left--;
      if (left === 0) resolve(results as T[]);
    };
    for (let index = 0; index < pending.length; index++) {
      Promise.resolve(pending[index] as T | Promise<T>).then(
        (answer) => record(index, answer),
        reject,
      );
    }
    deadline.whenExpired(() => {
      for (let index = 0; index < results.length; index++) {
        if (!answered[index]) results[index] = answers.timedOut(index);
      }
      resolve(results as T[]);
    });
  });
}

/** The message of a partition answered REQUEST_TIMED_OUT. */
export function timedOutMessage(timeoutMs: number): string {
  return (
    `not durable within timeout_ms ${timeoutMs} ms; the append was not withdrawn, and the ` +
    "batches may still become durable"
  );
}
