// Consumer groups with broker-side assignment, after Kafka's KIP-848. Members join and stay by
// heartbeating; the coordinator computes a target assignment whenever the membership or the
// subscriptions change (a new group epoch), and hands each member its part on its next
// heartbeat. A partition moves to its new owner only after the previous owner has heartbeated
// and so learned it lost it, so two members never own a partition at once.
//
//   member A ──hb(epoch 3)──► coordinator: target(A) = {0,1}, owned by A now {0,1,2}
//                             give A {0,1} (epoch 4) ─ partition 2 is released
//   member B ──hb(epoch 3)──► target(B) = {2,3}; 2 is released now, so give B {2,3} (epoch 4)
//
// Membership lives in memory: after a restart members are unknown and rejoin. Committed
// offsets are durable (offset_store.ts); this file only decides who may commit what.

import hyperid from "hyperid";
import { SluiceError } from "../record/mod.ts";

export type Assignment = Map<string, number[]>;

export type HeartbeatRequest = {
  groupId: string;
  memberId: string | null;
  /** 0 to join, -1 to leave, otherwise the epoch of the member's last heartbeat response. */
  memberEpoch: number;
  /** The subscription; null or absent keeps the previous one. */
  topics?: string[] | null;
};

export type HeartbeatResponse = {
  memberId: string;
  memberEpoch: number;
  heartbeatIntervalMs: number;
  /** The member's partitions when they changed since its last heartbeat, else null. */
  assignment: Assignment | null;
};

export type GroupCoordinatorOptions = {
  /** Partition count of a topic, or undefined when it does not exist. */
  partitionsOf: (topic: string) => number | undefined;
  sessionTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  now?: () => number;
  /**
   * Whether another group protocol (the Kafka listener's classic groups) has members under
   * this id now: a join is then refused with INCONSISTENT_GROUP_PROTOCOL.
   */
  heldElsewhere?: (groupId: string) => boolean;
  /** Told of every membership change (for the broker's log); must not throw. */
  onEvent?: (event: GroupEvent) => void;
};

/**
 * A membership change: a member joined, left, was evicted after its session timed out, or was
 * fenced (it heartbeated with a stale epoch and must rejoin). `groupEpoch` is the generation
 * after the change, `members` the count after it.
 */
export type GroupEvent = {
  kind: "joined" | "left" | "expired" | "fenced";
  groupId: string;
  memberId: string;
  groupEpoch: number;
  members: number;
};

/** One live group as ListGroups shows it. */
export type GroupSummary = {
  groupId: string;
  /** "stable": every member owns its target; "reconciling": partitions are still moving. */
  state: "stable" | "reconciling";
  groupEpoch: number;
  members: number;
};

export type GroupDescription = {
  groupId: string;
  groupEpoch: number;
  members: { memberId: string; memberEpoch: number; topics: string[]; assignment: Assignment }[];
};

export const GROUP_ID_BYTES_MAX = 255;
export const GROUP_MEMBERS_MAX = 1_000;
export const GROUPS_MAX = 10_000;
export const SESSION_TIMEOUT_MS_DEFAULT = 45_000;
export const HEARTBEAT_INTERVAL_MS_DEFAULT = 3_000;

type Member = {
  id: string;
  epoch: number;
  topics: string[];
  lastSeenMs: number;
  /** What the member was last told it owns. */
  owned: Assignment;
};

type Group = {
  id: string;
  epoch: number;
  members: Map<string, Member>;
  target: Map<string, Assignment>;
};

const nextMemberId = hyperid({ urlSafe: true });

function groupError(code: "UNKNOWN_MEMBER_ID" | "FENCED_MEMBER_EPOCH", message: string) {
  return new SluiceError(code, message);
}

export class GroupCoordinator {
  #groups = new Map<string, Group>();
  #partitionsOf: (topic: string) => number | undefined;
  #heldElsewhere: ((groupId: string) => boolean) | undefined;
  #sessionTimeoutMs: number;
  #heartbeatIntervalMs: number;
  #now: () => number;
  #onEvent: ((event: GroupEvent) => void) | undefined;
  #rebalances = 0;

  constructor(options: GroupCoordinatorOptions) {
    this.#onEvent = options.onEvent;
    this.#partitionsOf = options.partitionsOf;
    this.#sessionTimeoutMs = options.sessionTimeoutMs ?? SESSION_TIMEOUT_MS_DEFAULT;
    this.#heartbeatIntervalMs = options.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS_DEFAULT;
    this.#now = options.now ?? Date.now;
    this.#heldElsewhere = options.heldElsewhere;
  }

  heartbeat(request: HeartbeatRequest): HeartbeatResponse {
    validateGroupId(request.groupId);
    this.expire();
    if (request.memberEpoch === 0 && this.#heldElsewhere?.(request.groupId) === true) {
      throw new SluiceError(
        "INCONSISTENT_GROUP_PROTOCOL",
        `Group ${request.groupId} has members of Kafka's classic protocol`,
        { groupId: request.groupId },
      );
    }
    const group = this.#group(request.groupId);
    if (request.memberEpoch === -1) return this.#leave(group, request);
    const member =
      request.memberEpoch === 0 ? this.#join(group, request) : this.#find(group, request);
    member.lastSeenMs = this.#now();
    if (request.topics != null && !sameTopics(request.topics, member.topics)) {
      member.topics = [...new Set(request.topics)].sort();
      this.#rebalance(group);
    }
    const next = this.#deliverable(group, member);
    const changed = !sameAssignment(next, member.owned) || member.epoch === 0;
    if (changed) {
      member.owned = next;
      member.epoch = group.epoch;
    }
    return {
      memberId: member.id,
      memberEpoch: member.epoch,
      heartbeatIntervalMs: this.#heartbeatIntervalMs,
      assignment: changed ? copyAssignment(next) : null,
    };
  }

  #group(groupId: string): Group {
    let group = this.#groups.get(groupId);
    if (group === undefined) {
      if (this.#groups.size >= GROUPS_MAX) {
        throw new SluiceError("INVALID_CONFIG", `Group limit ${GROUPS_MAX} reached`, { groupId });
      }
      group = { id: groupId, epoch: 0, members: new Map(), target: new Map() };
      this.#groups.set(groupId, group);
    }
    return group;
  }

  #join(group: Group, request: HeartbeatRequest): Member {
    if (group.members.size >= GROUP_MEMBERS_MAX) {
      throw new SluiceError("INVALID_CONFIG", `Group ${group.id} has ${GROUP_MEMBERS_MAX} members`);
    }
    const id = request.memberId ?? nextMemberId();
    group.members.get(id)?.owned.clear();
    const member: Member = { id, epoch: 0, topics: [], lastSeenMs: this.#now(), owned: new Map() };
    group.members.set(id, member);
    member.topics = [...new Set(request.topics ?? [])].sort();
    this.#rebalance(group);
    this.#emit("joined", group, id);
    return member;
  }

  #find(group: Group, request: HeartbeatRequest): Member {
    const member = request.memberId === null ? undefined : group.members.get(request.memberId);
    if (member === undefined) {
      throw groupError(
        "UNKNOWN_MEMBER_ID",
        `Member ${request.memberId} is not in group ${group.id}; rejoin with epoch 0`,
      );
    }
    if (request.memberEpoch !== member.epoch) {
      // The answer tells the member to drop its partitions and rejoin, so it is removed now
      // and its partitions are free for the next target (after KIP-848): kept, they would
      // stay owned by a member that will never heartbeat with this id and epoch again, and a
      // rejoin with a new id would get nothing until the session timed out.
      group.members.delete(member.id);
      this.#rebalance(group);
      this.#emit("fenced", group, member.id);
      throw groupError(
        "FENCED_MEMBER_EPOCH",
        `Member ${member.id} sent epoch ${request.memberEpoch} but has ${member.epoch} in group ` +
          `${group.id}; it is removed: rejoin with epoch 0`,
      );
    }
    return member;
  }

  #leave(group: Group, request: HeartbeatRequest): HeartbeatResponse {
    const memberId = request.memberId ?? "";
    if (group.members.delete(memberId)) {
      this.#rebalance(group);
      this.#emit("left", group, memberId);
    }
    return {
      memberId,
      memberEpoch: -1,
      heartbeatIntervalMs: this.#heartbeatIntervalMs,
      assignment: null,
    };
  }

  /** Rebalances (new group epochs) of every group since the coordinator started. */
  get rebalances(): number {
    return this.#rebalances;
  }

  /** Range assignment per topic over the members subscribed to it, ordered by member id. */
  #rebalance(group: Group): void {
    group.epoch++;
    this.#rebalances++;
    group.target = new Map();
    const members = [...group.members.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
    for (const member of members) group.target.set(member.id, new Map());
    const topics = new Set(members.flatMap((member) => member.topics));
    for (const topic of topics) {
      const count = this.#partitionsOf(topic) ?? 0;
      const subscribers = members.filter((member) => member.topics.includes(topic));
      const share = Math.floor(count / subscribers.length);
      const extra = count % subscribers.length;
      let next = 0;
      subscribers.forEach((member, i) => {
        const size = share + (i < extra ? 1 : 0);
        const partitions = Array.from({ length: size }, (_, k) => next + k);
        next += size;
        if (partitions.length > 0) group.target.get(member.id)!.set(topic, partitions);
      });
    }
  }

  /** The member's target less partitions another member still owns (not yet released). */
  #deliverable(group: Group, member: Member): Assignment {
    const target = group.target.get(member.id) ?? new Map<string, number[]>();
    const result: Assignment = new Map();
    for (const [topic, partitions] of target) {
      const free = partitions.filter((p) => !ownedByOther(group, member, topic, p));
      if (free.length > 0) result.set(topic, free);
    }
    return result;
  }

  /** Evicts members whose session timed out. Called on every heartbeat and by the server. */
  expire(): void {
    const deadline = this.#now() - this.#sessionTimeoutMs;
    for (const group of this.#groups.values()) {
      const evicted: string[] = [];
      for (const [id, member] of group.members) {
        if (member.lastSeenMs < deadline) {
          group.members.delete(id);
          evicted.push(id);
        }
      }
      if (evicted.length > 0) this.#rebalance(group);
      for (const id of evicted) this.#emit("expired", group, id);
      if (group.members.size === 0) this.#groups.delete(group.id);
    }
  }

  /**
   * Checks that a member may commit these partitions: it is in the group with exactly this
   * epoch and owns them. An unchecked commit (no member id, epoch -1) is always allowed.
   */
  checkCommit(
    groupId: string,
    memberId: string | null,
    memberEpoch: number,
    partitions: { topic: string; partition: number }[],
  ): void {
    validateGroupId(groupId);
    if (memberId === null && memberEpoch === -1) return;
    const group = this.#groups.get(groupId);
    const member = group?.members.get(memberId ?? "");
    if (group === undefined || member === undefined) {
      throw groupError("UNKNOWN_MEMBER_ID", `Member ${memberId} is not in group ${groupId}`);
    }
    if (member.epoch !== memberEpoch) {
      throw groupError(
        "FENCED_MEMBER_EPOCH",
        `Commit from member ${member.id} with epoch ${memberEpoch}; its epoch is ${member.epoch}`,
      );
    }
    for (const { topic, partition } of partitions) {
      if (!(member.owned.get(topic)?.includes(partition) ?? false)) {
        throw groupError(
          "FENCED_MEMBER_EPOCH",
          `Member ${member.id} commits ${topic}-${partition}, which it does not own`,
        );
      }
    }
  }

  describe(groupId: string): GroupDescription {
    validateGroupId(groupId);
    this.expire();
    const group = this.#groups.get(groupId);
    const members = [...(group?.members.values() ?? [])].map((member) => ({
      memberId: member.id,
      memberEpoch: member.epoch,
      topics: [...member.topics],
      assignment: copyAssignment(member.owned),
    }));
    return { groupId, groupEpoch: group?.epoch ?? 0, members };
  }

  /** The groups with members now, by id; a group whose last member left is gone. */
  list(): GroupSummary[] {
    this.expire();
    return [...this.#groups.values()]
      .filter((group) => group.members.size > 0)
      .map((group) => ({
        groupId: group.id,
        state: isStable(group) ? ("stable" as const) : ("reconciling" as const),
        groupEpoch: group.epoch,
        members: group.members.size,
      }))
      .sort((a, b) => (a.groupId < b.groupId ? -1 : a.groupId > b.groupId ? 1 : 0));
  }

  #emit(kind: GroupEvent["kind"], group: Group, memberId: string): void {
    this.#onEvent?.({
      kind,
      groupId: group.id,
      memberId,
      groupEpoch: group.epoch,
      members: group.members.size,
    });
  }

  /** Recomputes assignments of groups subscribed to a topic whose partitions changed. */
  topicChanged(topic: string): void {
    for (const group of this.#groups.values()) {
      const subscribed = [...group.members.values()].some((m) => m.topics.includes(topic));
      if (subscribed) this.#rebalance(group);
    }
  }
}

/** Every member owns exactly its target: no partition waits to move. */
function isStable(group: Group): boolean {
  for (const member of group.members.values()) {
    const target = group.target.get(member.id) ?? new Map<string, number[]>();
    if (!sameAssignment(target, member.owned)) return false;
  }
  return true;
}

export function validateGroupId(groupId: unknown): string {
  const valid =
    typeof groupId === "string" &&
    groupId.length > 0 &&
    new TextEncoder().encode(groupId).length <= GROUP_ID_BYTES_MAX;
  if (!valid) {
    throw new SluiceError(
      "INVALID_GROUP_ID",
      `Group id ${JSON.stringify(groupId)} must be 1 to ${GROUP_ID_BYTES_MAX} bytes`,
    );
  }
  return groupId as string;
}

function ownedByOther(group: Group, member: Member, topic: string, partition: number): boolean {
  for (const other of group.members.values()) {
    if (other !== member && (other.owned.get(topic)?.includes(partition) ?? false)) return true;
  }
  return false;
}

function sameTopics(a: string[], b: string[]): boolean {
  const sorted = [...new Set(a)].sort();
  return sorted.length === b.length && sorted.every((topic, i) => topic === b[i]);
}

function sameAssignment(a: Assignment, b: Assignment): boolean {
  if (a.size !== b.size) return false;
  for (const [topic, partitions] of a) {
    const other = b.get(topic);
    if (other === undefined || other.length !== partitions.length) return false;
    if (!partitions.every((p, i) => p === other[i])) return false;
  }
  return true;
}

function copyAssignment(assignment: Assignment): Assignment {
  return new Map([...assignment].map(([topic, partitions]) => [topic, [...partitions]]));
}
