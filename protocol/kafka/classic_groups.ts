// Kafka's classic consumer-group protocol, for clients on the Kafka listener: the broker only
// relays. Members join with their subscription as opaque protocol metadata; once everyone has
// (re)joined, the first member becomes the leader and receives every member's metadata; the
// leader computes the assignment on the client and hands it back in SyncGroup, and the broker
// passes each member its part.
//
//   Empty ──join──► PreparingRebalance ──all joined / timeout──► CompletingRebalance
//     ▲                  ▲    (a new group waits initialRebalanceDelayMs)     │ leader's sync
//     └──last leaves──── └──── join, leave, session expiry ◄──── Stable ◄─────┘
//
// Groups share one id space with sluice's own (KIP-848-style) groups: a group with members is
// one kind or the other, and a join of the other kind gets INCONSISTENT_GROUP_PROTOCOL.
// Membership lives in memory, as the native groups' does: after a restart members rejoin.
// Committed offsets are the engine's (one store for both listeners).

import { randomUUID } from "node:crypto";
import { KAFKA_ERRORS as E } from "./errors.ts";

export const CLASSIC_GROUPS_MAX = 10_000;
export const CLASSIC_MEMBERS_MAX = 1_000;
export const SESSION_TIMEOUT_MS_MIN = 1_000;
export const SESSION_TIMEOUT_MS_MAX = 1_800_000;
const REBALANCE_TIMEOUT_MS_MAX = 300_000;

export type GroupState = "Empty" | "PreparingRebalance" | "CompletingRebalance" | "Stable";

export type JoinRequest = {
  groupId: string;
  memberId: string;
  sessionTimeoutMs: number;
  /** -1 (version 0): the session timeout. */
  rebalanceTimeoutMs: number;
  protocolType: string;
  protocols: { name: string; metadata: Uint8Array }[];
  clientId: string;
  clientHost: string;
  /** Version 4 and later: a member without an id is first told its id (MEMBER_ID_REQUIRED). */
  requireKnownMemberId: boolean;
};

export type JoinAnswer = {
  errorCode: number;
  generationId: number;
  protocolName: string;
  leader: string;
  memberId: string;
  members: { memberId: string; groupInstanceId: null; metadata: Uint8Array }[];
};

export type SyncAnswer = { errorCode: number; assignment: Uint8Array };

type Member = {
  id: string;
  clientId: string;
  clientHost: string;
  sessionTimeoutMs: number;
  rebalanceTimeoutMs: number;
  protocols: { name: string; metadata: Uint8Array }[];
  assignment: Uint8Array;
  lastSeenMs: number;
  joining: ((answer: JoinAnswer) => void) | undefined;
  syncing: ((answer: SyncAnswer) => void) | undefined;
};

type Group = {
  id: string;
  state: GroupState;
  generation: number;
  protocolType: string;
  protocolName: string;
  leader: string;
  members: Map<string, Member>;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** True while the first rebalance of an empty group waits for more joiners. */
  initialDelay: boolean;
};

export type ClassicGroupsOptions = {
  initialRebalanceDelayMs: number;
  /** Members the native coordinator has in a group now. */
  nativeMembers: (groupId: string) => number;
  now?: () => number;
  /** Told of membership changes and completed rebalances (the broker's log); must not throw. */
  onEvent?: (event: ClassicGroupEvent) => void;
};

/**
 * A classic group's membership change: a member joined, left (LeaveGroup), or expired (silent
 * past its session timeout, or not rejoining within the rebalance timeout); or a rebalance
 * completed (`memberId` ""). `generation` is the group's generation after the change: a join
 * or leave starts a rebalance, whose completion moves it on.
 */
export type ClassicGroupEvent = {
  kind: "joined" | "left" | "expired" | "rebalanced";
  groupId: string;
  memberId: string;
  generation: number;
  members: number;
};

const EMPTY = new Uint8Array(0);

function failedJoin(errorCode: number, memberId: string): JoinAnswer {
  return { errorCode, generationId: -1, protocolName: "", leader: "", memberId, members: [] };
}

export class ClassicGroups {
  #groups = new Map<string, Group>();
  /** Member ids handed out with MEMBER_ID_REQUIRED, until their deadline. */
  #pending = new Map<string, number>();
  #options: ClassicGroupsOptions;
  #now: () => number;
  /** Rebalances (new generations) of every classic group since the listener started. */
  rebalances = 0;

  constructor(options: ClassicGroupsOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** Whether a classic group with members holds this id. */
  claims(groupId: string): boolean {
    return (this.#groups.get(groupId)?.members.size ?? 0) > 0;
  }

  #refusal(request: JoinRequest, group: Group | undefined): number {
    if (request.groupId.length === 0) return E.INVALID_GROUP_ID;
    const timeout = request.sessionTimeoutMs;
    if (timeout < SESSION_TIMEOUT_MS_MIN || timeout > SESSION_TIMEOUT_MS_MAX) {
      return E.INVALID_SESSION_TIMEOUT;
    }
    if (this.#options.nativeMembers(request.groupId) > 0) return E.INCONSISTENT_GROUP_PROTOCOL;
    if (request.protocols.length === 0 || request.protocolType.length === 0) {
      return E.INCONSISTENT_GROUP_PROTOCOL;
    }
    if (group === undefined || group.members.size === 0) return E.NONE;
    if (group.protocolType !== request.protocolType) return E.INCONSISTENT_GROUP_PROTOCOL;
    const others = [...group.members.values()].filter((m) => m.id !== request.memberId);
    const common = request.protocols.some((p) =>
      others.every((m) => m.protocols.some((q) => q.name === p.name)),
    );
    return common ? E.NONE : E.INCONSISTENT_GROUP_PROTOCOL;
  }

  join(request: JoinRequest): JoinAnswer | Promise<JoinAnswer> {
    let group = this.#groups.get(request.groupId);
    const refusal = this.#refusal(request, group);
    if (refusal !== E.NONE) return failedJoin(refusal, request.memberId);
    let memberId = request.memberId;
    const known = group?.members.get(memberId);
    if (known === undefined && memberId !== "" && !this.#pending.has(memberId)) {
      return failedJoin(E.UNKNOWN_MEMBER_ID, memberId);
    }
    if (memberId === "") {
      memberId = `${request.clientId}-${randomUUID()}`;
      if (request.requireKnownMemberId) {
        if (this.#pending.size >= CLASSIC_GROUPS_MAX) this.#expirePending(this.#now());
        this.#pending.set(memberId, this.#now() + request.sessionTimeoutMs);
        return failedJoin(E.MEMBER_ID_REQUIRED, memberId);
      }
    }
    this.#pending.delete(memberId);
    if (group === undefined) {
      if (this.#groups.size >= CLASSIC_GROUPS_MAX)
        return failedJoin(E.COORDINATOR_NOT_AVAILABLE, memberId);
      group = newGroup(request.groupId);
      this.#groups.set(group.id, group);
    }
    if (known === undefined && group.members.size >= CLASSIC_MEMBERS_MAX) {
      return failedJoin(E.GROUP_MAX_SIZE_REACHED, memberId);
    }
    return this.#enter(group, request, memberId, known);
  }

  #enter(group: Group, request: JoinRequest, memberId: string, known: Member | undefined) {
    const member: Member = known ?? {
      id: memberId,
      clientId: request.clientId,
      clientHost: request.clientHost,
      sessionTimeoutMs: request.sessionTimeoutMs,
      rebalanceTimeoutMs: request.sessionTimeoutMs,
      protocols: [],
      assignment: EMPTY,
      lastSeenMs: this.#now(),
      joining: undefined,
      syncing: undefined,
    };
    member.sessionTimeoutMs = request.sessionTimeoutMs;
    member.rebalanceTimeoutMs = Math.min(
      REBALANCE_TIMEOUT_MS_MAX,
      request.rebalanceTimeoutMs > 0 ? request.rebalanceTimeoutMs : request.sessionTimeoutMs,
    );
    // The metadata is a view of the request: copied, since it outlives it.
    member.protocols = request.protocols.map((p) => ({
      name: p.name,
      metadata: p.metadata.slice(),
    }));
    member.lastSeenMs = this.#now();
    if (group.members.size === 0) group.protocolType = request.protocolType;
    const isNew = !group.members.has(member.id);
    group.members.set(member.id, member);
    if (isNew) this.#emit("joined", group, member.id);
    const answer = new Promise<JoinAnswer>((resolve) => {
      member.joining?.(failedJoin(E.REBALANCE_IN_PROGRESS, member.id));
      member.joining = resolve;
    });
    if (group.state !== "PreparingRebalance") this.#prepare(group);
    else this.#completeIfAllJoined(group);
    return answer;
  }

  #prepare(group: Group): void {
    for (const member of group.members.values()) {
      member.syncing?.({ errorCode: E.REBALANCE_IN_PROGRESS, assignment: EMPTY });
      member.syncing = undefined;
    }
    const wasEmpty = group.state === "Empty";
    group.state = "PreparingRebalance";
    if (group.timer !== undefined) clearTimeout(group.timer);
    let timeoutMs = 0;
    for (const member of group.members.values()) {
      timeoutMs = Math.max(timeoutMs, member.rebalanceTimeoutMs);
    }
    group.initialDelay = wasEmpty && this.#options.initialRebalanceDelayMs > 0;
    const delayMs = group.initialDelay
      ? Math.min(this.#options.initialRebalanceDelayMs, timeoutMs)
      : timeoutMs;
    group.timer = setTimeout(() => this.#completeJoin(group), delayMs);
    this.#completeIfAllJoined(group);
  }

  #completeIfAllJoined(group: Group): void {
    if (group.initialDelay) return;
    for (const member of group.members.values()) if (member.joining === undefined) return;
    this.#completeJoin(group);
  }

  #completeJoin(group: Group): void {
    if (group.state !== "PreparingRebalance") return;
    if (group.timer !== undefined) clearTimeout(group.timer);
    group.timer = undefined;
    group.initialDelay = false;
    // Members that did not rejoin within the rebalance timeout are out of the group.
    for (const [id, member] of group.members) {
      if (member.joining !== undefined) continue;
      group.members.delete(id);
      this.#emit("expired", group, id);
    }
    group.generation++;
    this.rebalances++;
    this.#emit("rebalanced", group, "");
    if (group.members.size === 0) {
      group.state = "Empty";
      this.#dropIfUnused(group);
      return;
    }
    const members = [...group.members.values()];
    group.protocolName = chooseProtocol(members);
    if (!group.members.has(group.leader)) group.leader = members[0]!.id;
    group.state = "CompletingRebalance";
    const everyone = members.map((m) => ({
      memberId: m.id,
      groupInstanceId: null,
      metadata: m.protocols.find((p) => p.name === group.protocolName)?.metadata ?? EMPTY,
    }));
    for (const member of members) {
      const resolve = member.joining!;
      member.joining = undefined;
      member.lastSeenMs = this.#now();
      resolve({
        errorCode: E.NONE,
        generationId: group.generation,
        protocolName: group.protocolName,
        leader: group.leader,
        memberId: member.id,
        members: member.id === group.leader ? everyone : [],
      });
    }
  }

  /** The member and group a request names, or the Kafka error code for why not. */
  #member(groupId: string, generationId: number, memberId: string) {
    const group = this.#groups.get(groupId);
    const member = group?.members.get(memberId);
    if (group === undefined || member === undefined) return E.UNKNOWN_MEMBER_ID;
    if (generationId !== group.generation) return E.ILLEGAL_GENERATION;
    member.lastSeenMs = this.#now();
    return { group, member };
  }

  sync(
    groupId: string,
    generationId: number,
    memberId: string,
    assignments: { memberId: string; assignment: Uint8Array }[],
  ): SyncAnswer | Promise<SyncAnswer> {
    const found = this.#member(groupId, generationId, memberId);
    if (typeof found === "number") return { errorCode: found, assignment: EMPTY };
    const { group, member } = found;
    if (group.state === "PreparingRebalance") {
      return { errorCode: E.REBALANCE_IN_PROGRESS, assignment: EMPTY };
    }
    if (group.state === "Stable") return { errorCode: E.NONE, assignment: member.assignment };
    if (member.id === group.leader) {
      for (const m of group.members.values()) m.assignment = EMPTY;
      for (const { memberId: id, assignment } of assignments) {
        const target = group.members.get(id);
        if (target !== undefined) target.assignment = assignment.slice();
      }
      group.state = "Stable";
      for (const m of group.members.values()) {
        m.syncing?.({ errorCode: E.NONE, assignment: m.assignment });
        m.syncing = undefined;
      }
      return { errorCode: E.NONE, assignment: member.assignment };
    }
    return new Promise((resolve) => {
      member.syncing?.({ errorCode: E.REBALANCE_IN_PROGRESS, assignment: EMPTY });
      member.syncing = resolve;
    });
  }

  heartbeat(groupId: string, generationId: number, memberId: string): number {
    const found = this.#member(groupId, generationId, memberId);
    if (typeof found === "number") return found;
    return found.group.state === "PreparingRebalance" ? E.REBALANCE_IN_PROGRESS : E.NONE;
  }

  leave(groupId: string, memberId: string): number {
    const group = this.#groups.get(groupId);
    const member = group?.members.get(memberId);
    if (group === undefined || member === undefined) return E.UNKNOWN_MEMBER_ID;
    this.#remove(group, member);
    this.#emit("left", group, member.id);
    return E.NONE;
  }

  #emit(kind: ClassicGroupEvent["kind"], group: Group, memberId: string): void {
    this.#options.onEvent?.({
      kind,
      groupId: group.id,
      memberId,
      generation: group.generation,
      members: group.members.size,
    });
  }

  #remove(group: Group, member: Member): void {
    group.members.delete(member.id);
    member.joining?.(failedJoin(E.UNKNOWN_MEMBER_ID, member.id));
    member.syncing?.({ errorCode: E.UNKNOWN_MEMBER_ID, assignment: EMPTY });
    if (group.members.size > 0) {
      if (group.state === "PreparingRebalance") this.#completeIfAllJoined(group);
      else this.#prepare(group);
      return;
    }
    if (group.timer !== undefined) clearTimeout(group.timer);
    group.timer = undefined;
    group.state = "Empty";
    this.#dropIfUnused(group);
  }

  #dropIfUnused(group: Group): void {
    if (group.members.size === 0) this.#groups.delete(group.id);
  }

  /**
   * Whether a commit may be stored: a simple commit (generation -1, no member) is allowed for
   * a group without classic members; otherwise the member and generation must be current.
   */
  checkCommit(groupId: string, generationId: number, memberId: string): number {
    const group = this.#groups.get(groupId);
    if (generationId === -1 && memberId === "") {
      return group === undefined || group.members.size === 0 ? E.NONE : E.UNKNOWN_MEMBER_ID;
    }
    const found = this.#member(groupId, generationId, memberId);
    if (typeof found === "number") return found;
    // A member of the current generation commits while a rebalance is being prepared (before
    // it rejoins, for the partitions it is about to give up); only between the join and the
    // leader's assignment is there no generation to commit in.
    return found.group.state === "CompletingRebalance" ? E.REBALANCE_IN_PROGRESS : E.NONE;
  }

  describe(groupId: string) {
    const group = this.#groups.get(groupId);
    if (group === undefined) return undefined;
    return {
      groupId,
      groupState: group.state,
      protocolType: group.protocolType,
      protocolData: group.protocolName,
      members: [...group.members.values()].map((m) => ({
        memberId: m.id,
        groupInstanceId: null,
        clientId: m.clientId,
        clientHost: m.clientHost,
        memberMetadata: m.protocols.find((p) => p.name === group.protocolName)?.metadata ?? EMPTY,
        memberAssignment: m.assignment,
      })),
    };
  }

  list(): { groupId: string; protocolType: string; groupState: GroupState }[] {
    return [...this.#groups.values()].map((g) => ({
      groupId: g.id,
      protocolType: g.protocolType,
      groupState: g.state,
    }));
  }

  /** Each classic group with its state, generation and member count (sluice's ListGroups). */
  summaries(): {
    groupId: string;
    protocolType: string;
    state: string;
    generation: number;
    members: number;
  }[] {
    return [...this.#groups.values()].map((g) => ({
      groupId: g.id,
      protocolType: g.protocolType,
      state: g.state,
      generation: g.generation,
      members: g.members.size,
    }));
  }

  /** Evicts members silent past their session timeout (those waiting in a join excepted). */
  expire(now: number): void {
    for (const group of [...this.#groups.values()]) {
      for (const member of [...group.members.values()]) {
        const waiting = member.joining !== undefined;
        if (!waiting && member.lastSeenMs + member.sessionTimeoutMs < now) {
          this.#remove(group, member);
          this.#emit("expired", group, member.id);
        }
      }
    }
    this.#expirePending(now);
  }

  #expirePending(now: number): void {
    for (const [id, deadline] of this.#pending) if (deadline < now) this.#pending.delete(id);
  }

  /** Answers every waiting join and sync (the listener is closing) and stops every timer. */
  close(): void {
    for (const group of this.#groups.values()) {
      if (group.timer !== undefined) clearTimeout(group.timer);
      for (const member of group.members.values()) {
        member.joining?.(failedJoin(E.COORDINATOR_NOT_AVAILABLE, member.id));
        member.syncing?.({ errorCode: E.COORDINATOR_NOT_AVAILABLE, assignment: EMPTY });
      }
    }
    this.#groups.clear();
  }
}

function newGroup(id: string): Group {
  return {
    id,
    state: "Empty",
    generation: 0,
    protocolType: "",
    protocolName: "",
    leader: "",
    members: new Map(),
    timer: undefined,
    initialDelay: false,
  };
}

/** The protocol every member supports that most members list first (ties: the leader's order). */
function chooseProtocol(members: Member[]): string {
  const candidates = members[0]!.protocols
    .map((p) => p.name)
    .filter((name) => members.every((m) => m.protocols.some((p) => p.name === name)));
  let best = candidates[0] ?? "";
  let bestVotes = -1;
  for (const name of candidates) {
    const votes = members.filter(
      (m) => m.protocols.find((p) => candidates.includes(p.name))?.name === name,
    ).length;
    if (votes > bestVotes) {
      best = name;
      bestVotes = votes;
    }
  }
  return best;
}
