// Answers to queue messages (accept, release, reject, renew), batched into QueueAck requests:
// the answers given within `flushMs` of each other go out together, contiguous offsets of one
// partition and one type as one range. Each answer's promise settles with the broker's word
// on its partition: resolved once durable, or rejected with the ServerError that refused it.
//
//   answer ──► pending (by member, then partition) ──flushMs, or batchMax answers──► QueueAck
//                                                                                      │
//   partition refused with INVALID_RECORD_STATE or LOCK_EXPIRED, more than one answer: │
//   the broker applied none of them, so the answers are split in halves and each half  │
//   sent again, until the refusals are pinned to the records they are about ◄──────────┘
//
// Piggy-backed: the consumer may `take` one member's pending answers and send them inside its
// next QueueFetch (PROTOCOL.md section 7a) instead of a QueueAck of their own; the fetch
// answer's `acks` then settle them by the same rules (a split retry goes out as a QueueAck).
// One request less per fetch, on both sides, and no answer waits longer for it: what is still
// pending when no fetch goes out leaves on the flushMs timer as before.
//
// Limits: a request carries at most ACK_RANGES_MAX ranges (more pending answers wait for the
// next request); answers pending at once are bounded by what the application holds, which
// the broker's prefetch bounds.

import { WIRE_ERRORS, errorFromWire } from "../codec/errors.ts";
import {
  ACK_RANGES_MAX,
  type AckPartition,
  type AckRange,
  type AckType,
  type QueueAckResponse,
} from "../codec/queue_ack.ts";
import { assert } from "../../record/mod.ts";
import { ClientError } from "./errors.ts";

export type AckSender = (memberId: string, partitions: AckPartition[]) => Promise<QueueAckResponse>;

type Answer = {
  offset: number;
  type: AckType;
  /** A release's delay (0 or absent: at once). */
  delayMs?: number;
  resolve: () => void;
  reject: (error: Error) => void;
};

type PartitionAnswers = { partition: number; answers: Answer[] };

/** One member's answers taken out of the batcher for a request the caller sends itself. */
export type TakenAnswers = {
  /** The answers as a request's ack partitions (at most ACK_RANGES_MAX ranges in all). */
  partitions: AckPartition[];
  /** Settles every taken answer from that request's ack results (or from its failure). */
  settle(response: Promise<QueueAckResponse>): void;
};

export class AckBatcher {
  readonly #send: AckSender;
  readonly #flushMs: number;
  readonly #batchMax: number;
  /** memberId → partition → answers not sent yet. */
  #pending = new Map<string, Map<number, Answer[]>>();
  #pendingCount = 0;
  /** The list the last answer went to (#answersOf); dropped whenever #pending gives lists up. */
  #lastMember: string | undefined;
  #lastPartition = -1;
  #lastAnswers: Answer[] | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #inFlight = new Set<Promise<void>>();
  #closed: Error | undefined;

  constructor(send: AckSender, options: { flushMs: number; batchMax: number }) {
    this.#send = send;
    this.#flushMs = options.flushMs;
    this.#batchMax = Math.min(options.batchMax, ACK_RANGES_MAX);
  }

  /** Answers not yet confirmed: pending plus sent. */
  get pendingCount(): number {
    return this.#pendingCount;
  }

  add(
    memberId: string,
    partition: number,
    offset: number,
    type: AckType,
    delayMs = 0,
  ): Promise<void> {
    if (this.#closed !== undefined) return Promise.reject(this.#closed);
    const answers = this.#answersOf(memberId, partition);
    const answered = new Promise<void>((resolve, reject) => {
      answers.push({ offset, type, delayMs, resolve, reject });
    });
    this.#pendingCount++;
    if (this.#pendingCount >= this.#batchMax) {
      void this.flush();
    } else if (this.#timer === undefined) {
      this.#timer = setTimeout(this.#flushOnTimer, this.#flushMs);
    }
    return answered;
  }

  readonly #flushOnTimer = (): void => void this.flush();

  /**
   * The pending answers of one member's partition. Answers come in runs of one partition (a
   * fetch's messages, partition by partition), so the last list is kept at hand: one answer
   * costs no map look-up while its partition is the previous answer's.
   */
  #answersOf(memberId: string, partition: number): Answer[] {
    const last = this.#lastAnswers;
    if (last !== undefined && this.#lastPartition === partition && this.#lastMember === memberId) {
      return last;
    }
    let partitions = this.#pending.get(memberId);
    if (partitions === undefined) {
      partitions = new Map();
      this.#pending.set(memberId, partitions);
    }
    let answers = partitions.get(partition);
    if (answers === undefined) {
      answers = [];
      partitions.set(partition, answers);
    }
    this.#lastMember = memberId;
    this.#lastPartition = partition;
    this.#lastAnswers = answers;
    return answers;
  }

  /** Sends every pending answer now; resolves once every request sent so far has settled. */
  flush(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const pending = this.#pending;
    this.#pending = new Map();
    this.#lastAnswers = undefined;
    this.#pendingCount = 0;
    for (const [memberId, partitions] of pending) {
      this.#track(this.#sendGroups(memberId, groupsOf(partitions)));
    }
    return Promise.all([...this.#inFlight]).then(() => undefined);
  }

  /**
   * Takes `memberId`'s pending answers, for the caller to send in a request of its own and
   * hand that request's response to `settle`; undefined when the member has none pending.
   */
  take(memberId: string): TakenAnswers | undefined {
    const partitions = this.#pending.get(memberId);
    if (partitions === undefined) return undefined;
    this.#pending.delete(memberId);
    this.#lastAnswers = undefined;
    let taken = 0;
    for (const answers of partitions.values()) taken += answers.length;
    // Fewer than batchMax answers are ever pending, and batchMax is at most ACK_RANGES_MAX.
    assert(taken > 0, "a member's pending entry holds answers");
    assert(taken <= this.#pendingCount, "taken answers were counted as pending");
    this.#pendingCount -= taken;
    if (this.#pending.size === 0 && this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const groups = groupsOf(partitions);
    return {
      partitions: groups.map(({ partition, answers }) => ({
        partition,
        ranges: rangesOf(answers),
      })),
      settle: (response) => this.#track(this.#settle(memberId, groups, response)),
    };
  }

  #track(sending: Promise<void>): void {
    this.#inFlight.add(sending);
    void sending.then(() => this.#inFlight.delete(sending));
  }

  /** Refuses answers from now on with `error`; those given before go out in a last flush. */
  close(error: Error): Promise<void> {
    this.#closed ??= error;
    return this.flush();
  }

  /** Never rejects: every outcome goes to the answers' own promises. */
  #sendGroups(memberId: string, groups: PartitionAnswers[]): Promise<void> {
    const partitions = groups.map(({ partition, answers }) => ({
      partition,
      ranges: rangesOf(answers),
    }));
    let sent: Promise<QueueAckResponse>;
    try {
      sent = this.#send(memberId, partitions);
    } catch (error) {
      // A send that throws at once is a failure like any other: it rejects the answers.
      sent = Promise.reject(error);
    }
    return this.#settle(memberId, groups, sent);
  }

  /** Never rejects: every outcome goes to the answers' own promises. */
  async #settle(
    memberId: string,
    groups: PartitionAnswers[],
    responding: Promise<QueueAckResponse>,
  ): Promise<void> {
    let response: QueueAckResponse;
    try {
      response = await responding;
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      for (const { answers } of groups) for (const answer of answers) answer.reject(failure);
      return;
    }
    const results = new Map(response.partitions.map((result) => [result.partition, result]));
    const retries: Promise<void>[] = [];
    for (const group of groups) {
      const result = results.get(group.partition);
      const code = result?.errorCode ?? response.errorCode;
      if (result === undefined && code === 0) {
        const missing = `QueueAckResponse has no result for partition ${group.partition}`;
        rejectAll(group, new ClientError("MALFORMED_RESPONSE", missing));
      } else if (code === 0) {
        for (const answer of group.answers) answer.resolve();
      } else if (isPerRecord(code) && group.answers.length > 1) {
        const half = group.answers.length >> 1;
        const { partition, answers } = group;
        retries.push(this.#sendGroups(memberId, [{ partition, answers: answers.slice(0, half) }]));
        retries.push(this.#sendGroups(memberId, [{ partition, answers: answers.slice(half) }]));
      } else {
        const message = result?.errorMessage ?? response.errorMessage;
        rejectAll(group, errorFromWire(code, message ?? `ack of partition ${group.partition}`));
      }
    }
    await Promise.all(retries);
  }
}

/** Codes about particular records: other answers of the same request may be fine. */
function isPerRecord(code: number): boolean {
  return code === WIRE_ERRORS.INVALID_RECORD_STATE || code === WIRE_ERRORS.LOCK_EXPIRED;
}

/** Each partition's answers in offset order, as rangesOf needs them. */
function groupsOf(partitions: Map<number, Answer[]>): PartitionAnswers[] {
  return [...partitions].map(([partition, answers]) => ({ partition, answers: inOrder(answers) }));
}

/** Answers in offset order: usually given in that order already, then left as they are. */
function inOrder(answers: Answer[]): Answer[] {
  for (let i = 1; i < answers.length; i++) {
    if (answers[i - 1]!.offset > answers[i]!.offset) {
      return answers.sort((a, b) => a.offset - b.offset);
    }
  }
  return answers;
}

function rejectAll(group: PartitionAnswers, error: Error): void {
  for (const answer of group.answers) answer.reject(error);
}

/** Offset-sorted answers as ranges: contiguous offsets of one type and delay become one range. */
export function rangesOf(answers: readonly Answer[]): AckRange[] {
  const ranges: AckRange[] = [];
  for (const { offset, type, delayMs } of answers) {
    const last = ranges.at(-1);
    const delay = delayMs ?? 0;
    const same = last !== undefined && last.type === type && (last.delayMs ?? 0) === delay;
    if (same && last.last + 1 === offset) last.last = offset;
    else if (delay > 0) ranges.push({ first: offset, last: offset, type, delayMs: delay });
    else ranges.push({ first: offset, last: offset, type });
  }
  return ranges;
}
