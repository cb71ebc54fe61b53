// The deadline of an acks=all Produce (`timeout_ms`, PROTOCOL.md section 5), shared by both
// listeners. As in Kafka, a partition whose batches are not durable when the request's
// timeout_ms has passed is answered with REQUEST_TIMED_OUT; its append is not withdrawn and
// goes on, so the batches may still become durable (and readable) after that answer. One
// timer serves every partition of a request, and it is cleared once every partition answered.

/**
 * setTimeout fires at once for a delay past 2^31 - 1 ms (about 24.8 days); timeout_ms is a u32
 * on the wire (an i32 on Kafka's), so longer timeouts wait this long.
 */
export const PRODUCE_TIMEOUT_MS_MAX = 2 ** 31 - 1;

export type ProduceDeadline = {
  readonly timeoutMs: number;
  /** Resolves when the deadline passes; never, once cancelled. */
  readonly expired: Promise<void>;
  cancel(): void;
};

/** Starts the deadline of one request; a negative timeout (Kafka's i32) counts as 0. */
export function startProduceDeadline(timeoutMs: number): ProduceDeadline {
  const waitMs = Math.min(Math.max(0, timeoutMs), PRODUCE_TIMEOUT_MS_MAX);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, waitMs);
  });
  return { timeoutMs: waitMs, expired, cancel: () => clearTimeout(timer) };
}

/**
 * `done` (one partition's answer), or `timedOut()` if the deadline passes first. An answer
 * that comes after the deadline is handed to `late` (to log a failure nobody was told of).
 */
export function answerWithin<T>(
  done: Promise<T>,
  deadline: ProduceDeadline,
  answers: { timedOut: () => T; late: (answer: T) => void },
): Promise<T> {
  let expired = false;
  const onTime = done.then((answer) => {
    if (expired) answers.late(answer);
    return answer;
  });
  const late = deadline.expired.then(() => {
    expired = true;
    return answers.timedOut();
  });
  return Promise.race([onTime, late]);
}

/** The message of a partition answered REQUEST_TIMED_OUT. */
export function timedOutMessage(timeoutMs: number): string {
  return (
    `not durable within timeout_ms ${timeoutMs} ms; the append was not withdrawn, and the ` +
    "batches may still become durable"
  );
}
