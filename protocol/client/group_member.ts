// A consumer's membership in a group (PROTOCOL.md section 7, GroupHeartbeat, after KIP-848):
// join with epoch 0, heartbeat every heartbeatIntervalMs the server asks for, apply each new
// assignment, rejoin at once when fenced or forgotten, leave with epoch -1.
//
//   ┌─ join (epoch 0, topics) ─► member id, epoch ≥ 1, assignment
//   │        every heartbeatIntervalMs: beforeHeartbeat() ─► heartbeat ─► new assignment?
//   └─◄ FENCED_MEMBER_EPOCH / UNKNOWN_MEMBER_ID: partitions lost, epoch 0 again
//
// The server hands a partition to its new owner only after the old owner has heartbeated,
// and from then on refuses the old owner's commits for it. There is no revocation step in
// which to commit, so the consumer commits what it has processed just before each heartbeat
// (`beforeHeartbeat`), on the same connection, so that the commit is applied first.

import { ServerError } from "../codec/errors.ts";
import { groupHeartbeat, type TopicPartitions } from "./control_calls.ts";
import { isRetriable } from "./errors.ts";
import type { Session } from "./session.ts";

export const HEARTBEAT_INTERVAL_MS_DEFAULT = 3_000;
export const REBALANCE_TIMEOUT_MS_DEFAULT = 30_000;

export type MembershipHooks = {
  /** Runs just before each heartbeat (not before a join). */
  beforeHeartbeat(): void;
  /** The member's partitions changed; `lost` when they were taken away by fencing. */
  onAssignment(assignment: TopicPartitions[], lost: boolean): void;
  /** A failure that retrying will not cure (an invalid group id, say). */
  onFatal(error: Error): void;
};

export class GroupMember {
  readonly groupId: string;
  #session: Session;
  #topics: readonly string[];
  #topicsChanged = true;
  #rebalanceTimeoutMs: number;
  #hooks: MembershipHooks;
  #memberId: string | null = null;
  #memberEpoch = 0;
  #intervalMs = HEARTBEAT_INTERVAL_MS_DEFAULT;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #beating: Promise<void> | undefined;
  #failures = 0;
  #stopped = false;

  constructor(
    session: Session,
    groupId: string,
    topics: readonly string[],
    options: { rebalanceTimeoutMs?: number; hooks: MembershipHooks },
  ) {
    this.#session = session;
    this.groupId = groupId;
    this.#topics = topics;
    this.#rebalanceTimeoutMs = options.rebalanceTimeoutMs ?? REBALANCE_TIMEOUT_MS_DEFAULT;
    this.#hooks = options.hooks;
  }

  get memberId(): string | null {
    return this.#memberId;
  }

  /** The epoch to send with commits; 0 while not (yet) a member. */
  get memberEpoch(): number {
    return this.#memberEpoch;
  }

  get joined(): boolean {
    return this.#memberEpoch > 0;
  }

  start(): void {
    this.#schedule(0);
  }

  /** Changes the subscription; sent with the next heartbeat, which is sent now. */
  subscribe(topics: readonly string[]): void {
    this.#topics = topics;
    this.#topicsChanged = true;
    this.#schedule(0);
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      // One heartbeat at a time: a beat asked for during another runs right after it.
      const previous = this.#beating ?? Promise.resolve();
      this.#beating = previous.then(() => this.#beat());
    }, delayMs);
  }

  async #beat(): Promise<void> {
    if (this.#stopped) return;
    const joining = this.#memberEpoch === 0;
    if (!joining) this.#hooks.beforeHeartbeat();
    const sendTopics = joining || this.#topicsChanged;
    try {
      const response = await groupHeartbeat(this.#session, {
        groupId: this.groupId,
        memberId: this.#memberId,
        memberEpoch: this.#memberEpoch,
        topics: sendTopics ? this.#topics : null,
        rebalanceTimeoutMs: this.#rebalanceTimeoutMs,
      });
      // Recorded even when leave() began meanwhile: a join answered after close still made
      // this client a member, and leave() needs its id and epoch to leave at once rather than
      // leave it in the group until the server's session timeout.
      this.#memberId = response.memberId ?? this.#memberId;
      this.#memberEpoch = response.memberEpoch;
      if (this.#stopped) return;
      if (sendTopics) this.#topicsChanged = false;
      this.#intervalMs = response.heartbeatIntervalMs > 0 ? response.heartbeatIntervalMs : 1;
      this.#failures = 0;
      if (response.assignment !== null) this.#hooks.onAssignment(response.assignment, false);
      this.#schedule(this.#intervalMs);
    } catch (error) {
      if (!this.#stopped) this.#onError(error);
    }
  }

  #onError(error: unknown): void {
    const code = error instanceof ServerError ? error.code : undefined;
    if (code === "FENCED_MEMBER_EPOCH" || code === "UNKNOWN_MEMBER_ID") {
      this.#memberEpoch = 0;
      this.#topicsChanged = true;
      this.#hooks.onAssignment([], true);
      this.#schedule(0);
      return;
    }
    if (isRetriable(error)) {
      this.#failures++;
      this.#schedule(Math.min(this.#session.backoffMs(this.#failures), this.#intervalMs));
      return;
    }
    this.#stopped = true;
    this.#hooks.onFatal(error instanceof Error ? error : new Error(String(error)));
  }

  /**
   * Stops heartbeating and leaves the group (epoch -1); its partitions go to the others. A join
   * or heartbeat in flight is waited for first, so a member whose join is answered only now
   * still leaves.
   */
  async leave(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    await this.#beating?.catch(() => undefined);
    if (this.#memberId === null || this.#memberEpoch === 0) return;
    const memberId = this.#memberId;
    this.#memberEpoch = -1;
    // A failed leave is not the caller's error (as a Kafka consumer's close logs and goes on):
    // the broker then drops the member when its session times out, and its partitions move
    // to the others only then.
    await groupHeartbeat(this.#session, {
      groupId: this.groupId,
      memberId,
      memberEpoch: -1,
      topics: null,
    }).catch(() => undefined);
  }
}
