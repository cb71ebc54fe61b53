import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { mulberry32 } from "../helpers.ts";
import { IndexedSet } from "../../record/mod.ts";

type Member = { id: number; indexedAt: number };

/** One step of a random program, applied alike to a Set and an IndexedSet. */
type Target = {
  add(m: Member): void;
  delete(m: Member): boolean;
  moveToBack(m: Member): void;
  has(m: Member): boolean;
  size(): number;
  first(): Member | undefined;
  forEach(visit: (m: Member) => void): void;
  values(): Iterable<Member>;
  clear(): void;
};

function setTarget(): Target {
  const set = new Set<Member>();
  return {
    add: (m) => set.add(m),
    delete: (m) => set.delete(m),
    moveToBack: (m) => {
      set.delete(m);
      set.add(m);
    },
    has: (m) => set.has(m),
    size: () => set.size,
    first: () => set.values().next().value,
    forEach: (visit) => {
      set.forEach((m) => {
        visit(m);
      });
    },
    values: () => set.values(),
    clear: () => set.clear(),
  };
}

function indexedTarget(): Target {
  const set = new IndexedSet<Member>();
  return {
    add: (m) => set.add(m),
    delete: (m) => set.delete(m),
    moveToBack: (m) => set.moveToBack(m),
    has: (m) => set.has(m),
    size: () => set.size,
    first: () => set.first(),
    forEach: (visit) => set.forEach(visit),
    values: () => set.values(),
    clear: () => set.clear(),
  };
}

/**
 * A random program over 40 members: adds, deletes, moves to the back, clears, and walks (by
 * forEach and by values(), some stopping early) during which visits change the set too. The
 * log records every visit and every answer, so two targets agree only if they agree on order.
 */
function run(seed: number, target: Target): (number | string)[] {
  const draw = mulberry32(seed);
  const members: Member[] = Array.from({ length: 40 }, (_, id) => ({ id, indexedAt: -1 }));
  const pick = () => members[Math.floor(draw() * members.length)]!;
  const log: (number | string)[] = [];
  const change = (depth: number) => {
    const roll = draw();
    const m = pick();
    if (roll < 0.3) target.add(m);
    else if (roll < 0.5) log.push(`d${target.delete(m)}`);
    else if (roll < 0.75) target.moveToBack(m);
    else if (roll < 0.77) target.clear();
    else if (roll < 0.85) log.push(`h${target.has(m)}`);
    else if (roll < 0.9) log.push(`f${target.first()?.id}`);
    else if (depth === 0) walk(depth + 1);
  };
  const walk = (depth: number) => {
    log.push("walk");
    if (draw() < 0.5) {
      let visits = 0;
      target.forEach((m) => {
        log.push(m.id);
        // Bounded: a walk that keeps moving members to the back would otherwise go on.
        if (++visits < 60 && draw() < 0.5) change(depth);
      });
    } else {
      const stopAfter = Math.floor(draw() * 50);
      let visits = 0;
      for (const m of target.values()) {
        log.push(m.id);
        if (++visits >= stopAfter) break;
        if (draw() < 0.5) change(depth);
      }
    }
    log.push(`n${target.size()}`);
  };
  for (let step = 0; step < 400; step++) {
    change(0);
    if (step % 25 === 0) walk(0);
  }
  walk(0);
  return log;
}

describe("IndexedSet", () => {
  test("agrees with a Set on order, membership and walks under random programs", () => {
    const random = mulberry32(39_001);
    for (let trial = 0; trial < 300; trial++) {
      const seed = Math.floor(random() * 2 ** 32);
      assert.deepEqual(run(seed, indexedTarget()), run(seed, setTarget()), `seed ${seed}`);
    }
  });

  test("moving members to the back keeps the array small (compaction)", () => {
    const set = new IndexedSet<Member>();
    const members: Member[] = Array.from({ length: 16 }, (_, id) => ({ id, indexedAt: -1 }));
    for (const m of members) set.add(m);
    for (let i = 0; i < 100_000; i++) set.moveToBack(members[(i * 7) % 16]!);
    // Slots in use are the members plus blanks, which compaction keeps below about as many.
    let highest = 0;
    for (const m of members) highest = Math.max(highest, m.indexedAt);
    assert.ok(highest < 64, `highest slot ${highest} after 100,000 moves of 16 members`);
    assert.equal(set.size, 16);
    assert.deepEqual(
      set.toArray().map((m) => m.id),
      Array.from({ length: 16 }, (_, k) => ((99_984 + k) * 7) % 16),
    );
  });

  test("a walk left by break lets the set compact again", () => {
    const set = new IndexedSet<Member>();
    const members: Member[] = Array.from({ length: 4 }, (_, id) => ({ id, indexedAt: -1 }));
    for (const m of members) set.add(m);
    for (const _ of set.values()) break;
    for (let i = 0; i < 10_000; i++) set.moveToBack(members[i % 4]!);
    assert.ok(Math.max(...members.map((m) => m.indexedAt)) < 64);
  });

  test("refuses a member of another IndexedSet, and forgets one that was cleared", () => {
    const a = new IndexedSet<Member>();
    const b = new IndexedSet<Member>();
    const m: Member = { id: 1, indexedAt: -1 };
    a.add(m);
    assert.throws(() => b.add(m), /another IndexedSet \(indexedAt 0\)/);
    a.clear();
    assert.equal(m.indexedAt, -1);
    assert.equal(a.has(m), false);
    b.add(m);
    assert.equal(b.first(), m);
    assert.equal(a.delete(m), false);
    assert.equal(b.size, 1);
  });
});
