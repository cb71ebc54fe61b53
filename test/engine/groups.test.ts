import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type Assignment, GroupCoordinator, type HeartbeatResponse } from "../../engine/groups.ts";
import { isSluiceError } from "../../engine/mod.ts";

type Client = { id: string | null; epoch: number; owned: Assignment };

function setup(partitions: Record<string, number>) {
  let nowMs = 1_000_000;
  const coordinator = new GroupCoordinator({
    partitionsOf: (topic) => partitions[topic],
    sessionTimeoutMs: 10_000,
    heartbeatIntervalMs: 100,
    now: () => nowMs,
  });
  const advance = (ms: number) => {
    nowMs += ms;
  };
  const beat = (client: Client, topics?: string[]): HeartbeatResponse => {
    const response = coordinator.heartbeat({
      groupId: "g",
      memberId: client.id,
      memberEpoch: client.epoch,
      topics: topics ?? null,
    });
    client.id = response.memberId;
    client.epoch = response.memberEpoch;
    if (response.assignment !== null) client.owned = response.assignment;
    return response;
  };
  return { coordinator, advance, beat };
}

function newClient(): Client {
  return { id: null, epoch: 0, owned: new Map() };
}

/** Heartbeats every client until no assignment changes; returns the rounds it took. */
function settle(beat: (c: Client) => HeartbeatResponse, clients: Client[]): number {
  for (let round = 1; round <= 10; round++) {
    const changed = clients.map((c) => beat(c).assignment !== null).some(Boolean);
    if (!changed) return round;
  }
  throw new Error("assignment did not settle in 10 rounds");
}

function owned(clients: Client[], topic: string): number[][] {
  return clients.map((c) => [...(c.owned.get(topic) ?? [])]);
}

function assertDisjointCover(clients: Client[], topic: string, count: number): void {
  const all = owned(clients, topic)
    .flat()
    .sort((a, b) => a - b);
  assert.deepEqual(
    all,
    Array.from({ length: count }, (_, i) => i),
    "disjoint cover",
  );
}

describe("consumer group coordinator", () => {
  test("a joining member gets an id, an epoch and every partition", () => {
    const { beat } = setup({ t: 4 });
    const a = newClient();
    const response = beat(a, ["t"]);
    assert.ok(response.memberId.length > 0);
    assert.ok(response.memberEpoch >= 1);
    assert.deepEqual(a.owned.get("t"), [0, 1, 2, 3]);
  });

  test("three members get a disjoint cover and rebalance when one leaves", () => {
    const { beat } = setup({ t: 8 });
    const clients = [newClient(), newClient(), newClient()];
    for (const c of clients) beat(c, ["t"]);
    settle(beat, clients);
    assertDisjointCover(clients, "t", 8);
    assert.ok(owned(clients, "t").every((p) => p.length >= 2));
    const [a, b, c] = clients as [Client, Client, Client];
    beat({ ...c, epoch: -1 });
    settle(beat, [a, b]);
    assertDisjointCover([a, b], "t", 8);
    assert.deepEqual(
      owned([a, b], "t").map((p) => p.length),
      [4, 4],
    );
  });

  test("no partition is owned by two members at any moment of a rebalance", () => {
    const { beat } = setup({ t: 6 });
    const a = newClient();
    beat(a, ["t"]);
    const b = newClient();
    beat(b, ["t"]);
    // b joined, but a still owns everything until it heartbeats: b must wait for partitions.
    const overlap = () => owned([a], "t")[0]!.filter((p) => owned([b], "t")[0]!.includes(p));
    assert.deepEqual(overlap(), []);
    for (let i = 0; i < 4; i++) {
      beat(a);
      assert.deepEqual(overlap(), []);
      beat(b);
      assert.deepEqual(overlap(), []);
    }
    assertDisjointCover([a, b], "t", 6);
  });

  test("a member that stops heartbeating is evicted after the session timeout", () => {
    const { beat, advance, coordinator } = setup({ t: 4 });
    const a = newClient();
    const b = newClient();
    beat(a, ["t"]);
    beat(b, ["t"]);
    settle(beat, [a, b]);
    advance(6_000);
    beat(a);
    advance(6_000);
    beat(a);
    assert.equal(coordinator.describe("g").members.length, 1);
    assert.deepEqual(a.owned.get("t"), [0, 1, 2, 3]);
    assert.throws(
      () => beat(b),
      (error: unknown) => isSluiceError(error, "UNKNOWN_MEMBER_ID"),
    );
  });

  test("a stale epoch is fenced and the member can rejoin", () => {
    const { beat } = setup({ t: 2 });
    const a = newClient();
    beat(a, ["t"]);
    const stale = { ...a, epoch: a.epoch + 5 };
    assert.throws(
      () => beat(stale),
      (error: unknown) => isSluiceError(error, "FENCED_MEMBER_EPOCH"),
    );
    const rejoined = { id: a.id, epoch: 0, owned: new Map() };
    beat(rejoined, ["t"]);
    assert.deepEqual(rejoined.owned.get("t"), [0, 1]);
  });

  test("commits are fenced by member, epoch and ownership", () => {
    const { beat, coordinator } = setup({ t: 2 });
    const a = newClient();
    beat(a, ["t"]);
    const ok = [{ topic: "t", partition: 1 }];
    coordinator.checkCommit("g", a.id, a.epoch, ok);
    coordinator.checkCommit("g", null, -1, [{ topic: "other", partition: 9 }]);
    const fenced = (error: unknown) => isSluiceError(error, "FENCED_MEMBER_EPOCH");
    assert.throws(() => coordinator.checkCommit("g", a.id, a.epoch - 1, ok), fenced);
    assert.throws(
      () => coordinator.checkCommit("g", a.id, a.epoch, [{ topic: "t", partition: 5 }]),
      fenced,
    );
    assert.throws(
      () => coordinator.checkCommit("g", "nobody", 3, ok),
      (error: unknown) => isSluiceError(error, "UNKNOWN_MEMBER_ID"),
    );
  });

  test("members with different subscriptions share only the topics they both want", () => {
    const { beat } = setup({ a: 2, b: 3 });
    const x = newClient();
    const y = newClient();
    beat(x, ["a", "b"]);
    beat(y, ["b"]);
    settle(beat, [x, y]);
    assert.deepEqual(x.owned.get("a"), [0, 1]);
    assertDisjointCover([x, y], "b", 3);
  });

  test("bad group ids are refused", () => {
    const { coordinator } = setup({});
    for (const groupId of ["", "x".repeat(256)]) {
      assert.throws(
        () => coordinator.heartbeat({ groupId, memberId: null, memberEpoch: 0, topics: [] }),
        (error: unknown) => isSluiceError(error, "INVALID_GROUP_ID"),
      );
    }
  });
});
