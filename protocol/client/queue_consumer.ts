// The queue consumer: a member of a queue (PROTOCOL.md section 7a) that acquires records with
// long-poll QueueFetch requests and answers each one (accept, release, reject, renew), the
// answers batched into QueueAck requests (queue_acks.ts).
//
//   const consumer = new QueueConsumer({ host, port, queue: "work" });
//   for await (const message of consumer) {
//     await handle(message.value);
//     void message.accept();        // resolves once the broker has made it durable
//   }
//
// Two connections: fetches on one (a long poll holds up what is behind it on its connection),
// answers on the other, so an accept is never stuck behind a fetch. The member is joined on the
// fetch connection and lives as long as it: when that connection drops (or the broker
// restarts, which forgets every member), the next poll joins again as a new member. Records
// the old member held are available to everyone again at once; answers for them are refused
// (UNKNOWN_MEMBER_ID), and the records come again, counted one delivery higher.
//
//   poll ──► join (when the fetch connection is new) ──► QueueFetch (long poll)
//        ──► records paired with the acquired ranges (queue_message.ts) ──► messages
//   message.accept() ──► AckBatcher ──ackFlushMs──► QueueAck ──► durable ──► promise resolves
//
// With `fetchesInFlight` n > 1 the consumer keeps n QueueFetch requests outstanding on the
// fetch connection (the broker serves them side by side): while the application handles one
// answer, the next is already on its way, so a consumer is not bound by one round trip per
// `maxRecords` records. Fetches already sent keep the limits of the poll that sent them.
//
// With `piggybackAcks` (the default) a fetch that goes out while the queue is keeping up (the
// last fetch came back with fewer records than asked for) carries the answers pending for its
// member (PROTOCOL.md: QueueFetch `acks`), and the fetch answer confirms them: one request and
// one response instead of two, and the broker ends that fetch's long poll once the acks are
// durable. Under a backlog (the last fetch came back full) answers go in QueueAck requests of
// their own: a fetch carrying acks is answered only after their fdatasync, and a consumer
// that always waited for one per fetch drained a backlog at 0.66x the rate (measured with
// bench/tools/queue_drain.ts). Against a broker that offers QueueFetch v2 a fetch carrying
// answers (while keeping up) waits for their fdatasync a bounded time at most (the broker's
// queueFetchAckWaitMs), and its answer's or a later answer's acks_durable_through confirms
// them (queue_ack_confirm.ts), so an answer's promise still resolves only once it is durable.
// With no fetch answered for ACK_CONFIRM_IDLE_MS while answers wait, a QueueAck v2 barrier
// asks.

import { WIRE_ERRORS, errorFromWire } from "../codec/errors.ts";
import type { AckType, QueueAckResponse } from "../codec/queue_ack.ts";
import { QUEUE_FETCH_RECORDS_MAX, type QueueFetchResponse } from "../codec/queue_fetch.ts";
import type { ClientConnection } from "./connection.ts";
import { REQUEST_TIMEOUT_MS_DEFAULT } from "./connection.ts";
import { ClientError, isRetriable } from "./errors.ts";
import { AckBatcher } from "./queue_acks.ts";
import { API } from "../codec/frames.ts";
import { AckConfirmations } from "./queue_ack_confirm.ts";
import { joinQueue, leaveQueue, queueAck, queueAckBarrier, queueFetch } from "./queue_calls.ts";
import { messagesOf, QueueMessage } from "./queue_message.ts";
import { LockRenewer } from "./queue_renewer.ts";
import { type ClientOptions, Session } from "./session.ts";
import { Wakers } from "./wakers.ts";

export { QueueMessage };

export const QUEUE_MAX_RECORDS_DEFAULT = 100;
export const QUEUE_MAX_BYTES_DEFAULT = 1024 * 1024;
export const QUEUE_MAX_WAIT_MS_DEFAULT = 500;
export const ACK_FLUSH_MS_DEFAULT = 5;
export const ACK_BATCH_MAX_DEFAULT = 1_000;
/** The broker ends a QueueFetch's wait before this anyway (PROTOCOL.md section 7a). */
const MAX_WAIT_MS_MAX = 60_000;
export const FETCHES_IN_FLIGHT_DEFAULT = 1;
/**
 * With acks awaiting their confirmation (QueueFetch v2) and no fetch answered for this long,
 * the consumer asks for it with a QueueAck v2 barrier.
 */
export const ACK_CONFIRM_IDLE_MS = 20;
/** Outstanding fetches per consumer at most: well under the broker's inFlightMax (1,024). */
export const FETCHES_IN_FLIGHT_MAX = 16;
/** The longest fetchIntervalMs: a pause longer than this is the application's to make. */
export const FETCH_INTERVAL_MS_MAX = 1_000;

export type QueueConsumerOptions = ClientOptions & {
  /** The queue to consume (declared beforehand, e.g. with Admin.declareQueue). */
  queue: string;
  /** Records one fetch acquires at most (default 100). */
  maxRecords?: number;
  /** The same as `maxRecords`, by RabbitMQ's name for it; give one or the other. */
  prefetch?: number;
  /** Bytes of batches one fetch returns at most; the first batch always comes (1 MiB). */
  maxBytes?: number;
  /** How long a fetch waits at the broker for records (default 500 ms). */
  maxWaitMs?: number;
  /** Accept each message when the iterator is asked for the next one (default false). */
  autoAccept?: boolean;
  /**
   * Renew the lock of every message handed out and not answered yet once half of it has run,
   * so that slow work keeps its records (default false: a lock runs out after lockMs).
   */
  renewLocks?: boolean;
  /** Answers given within this long of each other share one QueueAck (default 5 ms). */
  ackFlushMs?: number;
  /** A QueueAck goes out at once when this many answers wait (default 1,000). */
  ackBatchMax?: number;
  /**
   * QueueFetch requests kept outstanding (default 1, at most 16): with more than one, the next
   * records are on their way while the application handles the last ones. Each acquires up
   * to maxRecords, all within the queue's prefetch.
   */
  fetchesInFlight?: number;
  /**
   * While the queue keeps up (the last fetch came back short of maxRecords), send the answers
   * pending when a fetch goes out inside that fetch, rather than in a QueueAck of their own
   * (default true). With QueueFetch v2 that fetch is answered before their fdatasync, and a
   * later answer confirms them.
   */
  piggybackAcks?: boolean;
  /**
   * While the queue keeps up, a fetch goes out no sooner than this after the one before it
   * (default 0: at once). Records and answers gather meanwhile, so each fetch acquires more
   * records and carries more answers: fewer requests, answers and state-log commits per
   * record, for up to this much more latency. Give `ackFlushMs` at least this value so that
   * the answers wait for the fetch rather than leave in a QueueAck of their own. Under a
   * backlog (the last fetch came back full) fetches go out at once.
   */
  fetchIntervalMs?: number;
};

type Settings = {
  queue: string;
  maxRecords: number;
  maxBytes: number;
  maxWaitMs: number;
  autoAccept: boolean;
  requestTimeoutMs: number;
  fetchesInFlight: number;
  piggybackAcks: boolean;
  fetchIntervalMs: number;
};

type Member = {
  id: string;
  connection: ClientConnection;
  /** Set when the broker offers QueueFetch v2: its acks are confirmed after the answer. */
  confirmations: AckConfirmations | undefined;
  topic: string;
  partitions: number;
  lockMs: number;
};

function integerIn(name: string, value: number | undefined, fallback: number, range: number[]) {
  const resolved = value ?? fallback;
  const [min, max] = range as [number, number];
  if (!Number.isSafeInteger(resolved) || resolved < min || resolved > max) {
    throw new RangeError(`${name} ${resolved} is not an integer in [${min}, ${max}]`);
  }
  return resolved;
}

function resolveSettings(options: QueueConsumerOptions): Settings {
  if (typeof options?.queue !== "string" || options.queue.length === 0) {
    throw new TypeError(`queue ${String(options?.queue)} must be a non-empty string`);
  }
  const { maxRecords, prefetch } = options;
  if (maxRecords !== undefined && prefetch !== undefined && maxRecords !== prefetch) {
    throw new TypeError(`maxRecords ${maxRecords} and prefetch ${prefetch} differ`);
  }
  return {
    queue: options.queue,
    maxRecords: integerIn("maxRecords", maxRecords ?? prefetch, QUEUE_MAX_RECORDS_DEFAULT, [
      1,
      QUEUE_FETCH_RECORDS_MAX,
    ]),
    maxBytes: integerIn("maxBytes", options.maxBytes, QUEUE_MAX_BYTES_DEFAULT, [1, 0xffff_ffff]),
    maxWaitMs: integerIn("maxWaitMs", options.maxWaitMs, QUEUE_MAX_WAIT_MS_DEFAULT, [
      0,
      MAX_WAIT_MS_MAX,
    ]),
    autoAccept: options.autoAccept ?? false,
    requestTimeoutMs: options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT,
    fetchesInFlight: integerIn(
      "fetchesInFlight",
      options.fetchesInFlight,
      FETCHES_IN_FLIGHT_DEFAULT,
      [1, FETCHES_IN_FLIGHT_MAX],
    ),
    piggybackAcks: booleanOption("piggybackAcks", options.piggybackAcks, true),
    fetchIntervalMs: integerIn("fetchIntervalMs", options.fetchIntervalMs, 0, [
      0,
      FETCH_INTERVAL_MS_MAX,
    ]),
  };
}

function booleanOption(name: string, value: boolean | undefined, fallback: boolean): boolean {
  if (value !== undefined && typeof value !== "boolean") {
    throw new TypeError(`${name} ${String(value)} must be a boolean`);
  }
  return value ?? fallback;
}

/**
 * A v2 fetch's ack results once the broker has confirmed them durable: a partition whose
 * durability failed takes that failure's code.
 */
async function confirmed(
  confirm: AckConfirmations,
  fetching: Promise<QueueFetchResponse>,
): Promise<QueueAckResponse> {
  const response = await fetching;
  const results = ackResultsOf(response);
  const seq = response.ackSeq?.ackSeq ?? 0;
  if (seq === 0) return results;
  const failures = await confirm.wait(seq);
  if (failures.length === 0) return results;
  const failed = new Map(failures.map((failure) => [failure.partition, failure]));
  const partitions = results.partitions.map((result) => {
    const failure = failed.get(result.partition);
    if (failure === undefined) return result;
    const { errorCode, errorMessage } = failure;
    return { partition: result.partition, errorCode, errorMessage };
  });
  return { ...results, partitions };
}

/** A fetch answer's ack results, as the QueueAck answer the batcher settles answers from. */
function ackResultsOf(response: QueueFetchResponse): QueueAckResponse {
  return {
    errorCode: response.errorCode,
    errorMessage: response.errorMessage,
    partitions: response.acks,
  };
}

export class QueueConsumer {
  /** QueueJoin and QueueFetch: the member lives as long as this session's connection. */
  readonly #fetchSession: Session;
  /** QueueAck only, never stuck behind a long poll. */
  readonly #ackSession: Session;
  readonly #settings: Settings;
  readonly #acks: AckBatcher;
  readonly #renewer: LockRenewer | undefined;
  #member: Member | undefined;
  /** A join under way: concurrent fetches wait for it rather than joining twice. */
  #joining: Promise<Member> | undefined;
  /** Fetches sent ahead of the polls that will return them, oldest first. */
  #ahead: Promise<QueueMessage[]>[] = [];
  #polling = false;
  #failures = 0;
  /** The last fetch acquired fewer records than it asked for: the queue is keeping up. */
  #keepingUp = true;
  /**
   * When the last fetch went out or, while one waits for fetchIntervalMs, when it will
   * (performance.now()): fetches sent side by side (fetchesInFlight) take turns.
   */
  #fetchSentMs = Number.NEGATIVE_INFINITY;
  /** QueueFetch requests sent and not answered. */
  #fetchesOutstanding = 0;
  #confirmTimer: ReturnType<typeof setTimeout> | undefined;
  #wakers = new Wakers();
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(options: QueueConsumerOptions) {
    this.#settings = resolveSettings(options);
    this.#fetchSession = new Session(options);
    this.#ackSession = new Session(options);
    this.#renewer = options.renewLocks === true ? new LockRenewer() : undefined;
    this.#acks = new AckBatcher(
      (memberId, partitions) =>
        queueAck(this.#ackSession, { queue: this.#settings.queue, memberId, partitions }),
      {
        flushMs: integerIn("ackFlushMs", options.ackFlushMs, ACK_FLUSH_MS_DEFAULT, [0, 60_000]),
        batchMax: integerIn(
          "ackBatchMax",
          options.ackBatchMax,
          ACK_BATCH_MAX_DEFAULT,
          [1, 1_000_000],
        ),
      },
    );
  }

  get queue(): string {
    return this.#settings.queue;
  }

  /** This consumer's member id now (it changes when it joins again), or null before. */
  get memberId(): string | null {
    return this.#member?.id ?? null;
  }

  /** How long an acquired record stays locked to this member (known once joined). */
  get lockMs(): number | null {
    return this.#member?.lockMs ?? null;
  }

  /** Answers given and not yet confirmed by the broker. */
  get pendingAnswers(): number {
    return this.#acks.pendingCount;
  }

  /**
   * Acquires the next records: waits up to `maxWaitMs` at the broker. Returns [] when nothing
   * came, after a retriable failure (after a backoff; the next poll joins again when needed),
   * and once the consumer is closed. `maxRecords` lowers this fetch's limit.
   */
  async poll(options: { maxRecords?: number; maxWaitMs?: number } = {}): Promise<QueueMessage[]> {
    const settings = this.#settings;
    const maxRecords = integerIn("maxRecords", options.maxRecords, settings.maxRecords, [
      1,
      QUEUE_FETCH_RECORDS_MAX,
    ]);
    const maxWaitMs = integerIn("maxWaitMs", options.maxWaitMs, settings.maxWaitMs, [
      0,
      MAX_WAIT_MS_MAX,
    ]);
    if (this.#polling) throw new TypeError("poll() called while another poll is running");
    this.#polling = true;
    try {
      return await this.#next(maxRecords, maxWaitMs);
    } finally {
      this.#polling = false;
    }
  }

  /** Messages one at a time, until the consumer is closed. */
  async *[Symbol.asyncIterator](): AsyncGenerator<QueueMessage, void, undefined> {
    if (this.#polling) throw new TypeError("iteration started while a poll is running");
    this.#polling = true;
    let batch: QueueMessage[] = [];
    let next = 0;
    try {
      while (!this.#closed) {
        batch = await this.#next(this.#settings.maxRecords, this.#settings.maxWaitMs);
        for (next = 0; next < batch.length; ) {
          const message = batch[next++]!;
          yield message;
          if (this.#settings.autoAccept && message.answered === undefined) {
            // Its outcome is the broker's to tell, not this loop's: a refused accept means the
            // record comes again (at least once).
            message.accept().catch(() => undefined);
          }
          if (this.#closed) break;
        }
      }
    } finally {
      this.#polling = false;
      // Acquired but never handed out (the loop was left early): give them back now.
      for (const message of batch.slice(next)) message.release().catch(() => undefined);
    }
  }

  /** The oldest outstanding fetch's messages, with fetchesInFlight fetches kept outstanding. */
  #next(maxRecords: number, maxWaitMs: number): Promise<QueueMessage[]> {
    const ahead = this.#ahead;
    while (ahead.length < this.#settings.fetchesInFlight && !this.#closed) {
      const fetching = this.#pollOnce(maxRecords, maxWaitMs);
      // A fetch sent ahead may fail after the application stopped polling: handled here, its
      // error still reaches the poll that takes it.
      fetching.catch(() => undefined);
      ahead.push(fetching);
    }
    return ahead.shift() ?? Promise.resolve([]);
  }

  async #pollOnce(maxRecords: number, maxWaitMs: number): Promise<QueueMessage[]> {
    if (this.#closed) return [];
    try {
      const member = await this.#joined();
      if (!(await this.#paced())) return [];
      const confirm = member.confirmations;
      // Under a backlog answers go in QueueAcks on the other connection, v2 or not: a drain
      // whose every fetch carried them (each then confirmed by a later fetch) measured 0.44x
      // and 0.72x the rate (bench/tools/queue_drain.ts, loaded).
      const piggyback = this.#settings.piggybackAcks && this.#keepingUp;
      const answers = piggyback ? this.#acks.take(member.id) : undefined;
      const fetching = queueFetch(
        member.connection,
        {
          maxWaitMs,
          maxRecords,
          maxBytes: this.#settings.maxBytes,
          queue: this.#settings.queue,
          memberId: member.id,
          acks: answers?.partitions ?? [],
        },
        {
          timeoutMs: this.#settings.requestTimeoutMs + maxWaitMs,
          sendNow: true,
          apiVersion: confirm === undefined ? 1 : 2,
        },
      );
      answers?.settle(
        confirm === undefined ? fetching.then(ackResultsOf) : confirmed(confirm, fetching),
      );
      this.#fetchesOutstanding++;
      let response: QueueFetchResponse;
      try {
        response = await fetching;
      } finally {
        this.#fetchesOutstanding--;
      }
      if (confirm !== undefined && response.ackSeq !== undefined) {
        confirm.observe(response.ackSeq);
        this.#confirmSoon(member, confirm);
      }
      if (response.errorCode === WIRE_ERRORS.UNKNOWN_MEMBER_ID) {
        // The broker forgot the member (it restarted, or saw the connection drop): join again,
        // at once the first time, after a backoff if it keeps happening.
        if (this.#member === member) this.#member = undefined;
        if (this.#failures++ > 0) {
          await this.#waitForChange(this.#fetchSession.backoffMs(this.#failures));
        }
        return [];
      }
      const messages = this.#messages(member, response);
      this.#keepingUp = messages.length < maxRecords;
      return messages;
    } catch (error) {
      if (this.#closed) return [];
      if (!isRetriable(error)) throw error;
      this.#failures++;
      await this.#waitForChange(this.#fetchSession.backoffMs(this.#failures));
      return [];
    }
  }

  /**
   * Waits out what is left of fetchIntervalMs since the last fetch while the queue keeps up.
   * False when the consumer closed meanwhile.
   */
  async #paced(): Promise<boolean> {
    const intervalMs = this.#settings.fetchIntervalMs;
    const nowMs = performance.now();
    if (intervalMs === 0 || !this.#keepingUp) {
      this.#fetchSentMs = nowMs;
      return true;
    }
    const sendAtMs = Math.max(nowMs, this.#fetchSentMs + intervalMs);
    this.#fetchSentMs = sendAtMs;
    if (sendAtMs - nowMs >= 1) await this.#waitForChange(sendAtMs - nowMs);
    return !this.#closed;
  }

  /** The member on the fetch session's live connection, joining when there is none. */
  async #joined(): Promise<Member> {
    const connection = await this.#fetchSession.connection();
    const member = this.#member;
    if (member !== undefined && member.connection === connection) return member;
    // Its connection is gone: what it had sent is not confirmed on any other.
    member?.confirmations?.fail(
      new ClientError("CONNECTION_CLOSED", "The connection closed before the acks were durable"),
    );
    this.#member = undefined;
    if (this.#joining === undefined) {
      this.#joining = this.#join(connection).finally(() => {
        this.#joining = undefined;
      });
    }
    return this.#joining;
  }

  async #join(connection: ClientConnection): Promise<Member> {
    const joined = await joinQueue(connection, this.#settings.queue);
    if (joined.memberId === null || joined.topic === null) {
      throw new ClientError("MALFORMED_RESPONSE", "QueueJoinResponse without a member id");
    }
    const v2 =
      this.#settings.piggybackAcks &&
      connection.versionMax(API.QueueFetch) >= 2 &&
      connection.versionMax(API.QueueAck) >= 2;
    this.#member = {
      id: joined.memberId,
      connection,
      confirmations: v2 ? new AckConfirmations() : undefined,
      topic: joined.topic,
      partitions: joined.partitions,
      lockMs: joined.lockMs,
    };
    return this.#member;
  }

  #messages(member: Member, response: QueueFetchResponse): QueueMessage[] {
    if (response.errorCode !== 0) {
      throw errorFromWire(response.errorCode, response.errorMessage);
    }
    this.#failures = 0;
    const messages: QueueMessage[] = [];
    const sink = (message: QueueMessage, type: AckType, delayMs?: number) =>
      this.#answer(message, type, delayMs);
    for (const p of response.partitions) {
      if (p.errorCode !== 0) continue;
      const where = { topic: member.topic, partition: p.partition, memberId: member.id };
      const found = messagesOf(where, p.acquired, p.records, sink);
      for (const message of found.messages) {
        messages.push(message);
        this.#renewer?.track(message, member.lockMs);
      }
      // Acquired with no record to show for it: given back rather than left to its lock.
      for (const offset of found.missing) {
        this.#acks.add(member.id, p.partition, offset, "release").catch(() => undefined);
      }
    }
    return messages;
  }

  /**
   * Acks wait for their confirmation: a fetch outstanding brings it (the broker ends its long
   * poll when acks_durable_through moves); with none for ACK_CONFIRM_IDLE_MS, a QueueAck v2
   * barrier.
   */
  #confirmSoon(member: Member, confirm: AckConfirmations): void {
    // Restarted by every answer: a consumer that keeps fetching never sends a barrier, whose
    // answer would hold the fetch answers behind it on the connection until the fdatasync.
    if (this.#confirmTimer !== undefined) clearTimeout(this.#confirmTimer);
    this.#confirmTimer = undefined;
    if (!confirm.waiting) return;
    this.#confirmTimer = setTimeout(() => {
      this.#confirmTimer = undefined;
      if (!confirm.waiting || this.#fetchesOutstanding > 0) return;
      const request = { queue: this.#settings.queue, memberId: member.id };
      queueAckBarrier(member.connection, request).then(
        (response) => {
          confirm.observe(response);
          this.#confirmSoon(member, confirm);
        },
        (error: unknown) => confirm.fail(error instanceof Error ? error : new Error(String(error))),
      );
    }, ACK_CONFIRM_IDLE_MS);
  }

  #answer(message: QueueMessage, type: AckType, delayMs = 0): Promise<void> {
    if (type !== "renew") this.#renewer?.forget(message);
    return this.#acks.add(message.memberId, message.partition, message.offset, type, delayMs);
  }

  #waitForChange(timeoutMs: number): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return this.#wakers.wait(timeoutMs);
  }

  /** Sends every answer given so far now, and resolves once the broker has confirmed them. */
  flush(): Promise<void> {
    return this.#acks.flush();
  }

  /**
   * Sends every answer given so far and waits for the broker's word on each, then leaves the
   * queue (records the member still holds are available to others when this resolves) and
   * closes the connections. Answers given after this reject with CLOSED; a poll in progress
   * returns [].
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#renewer?.stop();
    this.#wakers.wakeAll();
    await this.#acks.close(new ClientError("CLOSED", "The queue consumer was closed"));
    // Left explicitly (on the answers' connection: the fetch connection may be in a long poll),
    // so that once close() resolves what the member held is available to the others. Closing
    // the fetch connection would do the same, but only once the broker has seen it close.
    // A leave that fails (the connection is lost) does not fail close(): the broker releases
    // the member's records when the connection that joined it (the fetch one) closes.
    const member = this.#member;
    if (member !== undefined && !member.connection.closed) {
      await leaveQueue(this.#ackSession, this.#settings.queue, member.id).catch(() => undefined);
    }
    await Promise.all([this.#fetchSession.close(), this.#ackSession.close()]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
