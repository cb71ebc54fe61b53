import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CallbackList } from "../../record/mod.ts";
import { mulberry32 } from "../helpers.ts";

describe("CallbackList", () => {
  test("iterates as a Set does while callbacks add and remove others", () => {
    // The same random program runs against a Set of callbacks and a CallbackList: each call
    // logs its id and may remove a random listed one (itself included) or add a new one.
    const random = mulberry32(16_034);
    for (let trial = 0; trial < 200; trial++) {
      const seed = Math.floor(random() * 2 ** 32);
      const run = (kind: "set" | "list"): number[] => {
        const draw = mulberry32(seed);
        const log: number[] = [];
        const set = new Set<() => void>();
        const list = new CallbackList();
        const removers = new Map<() => void, () => void>();
        const listed: (() => void)[] = [];
        let next = 0;
        const make = (): (() => void) => {
          const id = next++;
          const callback = () => {
            log.push(id);
            const roll = draw();
            if (roll < 0.3 && listed.length > 0) {
              remove(listed[Math.floor(draw() * listed.length)]!);
            } else if (roll < 0.45 && next < 200) {
              add(make());
            }
          };
          return callback;
        };
        const add = (callback: () => void) => {
          listed.push(callback);
          if (kind === "set") set.add(callback);
          else removers.set(callback, list.add(callback));
        };
        const remove = (callback: () => void) => {
          listed.splice(listed.indexOf(callback), 1);
          if (kind === "set") set.delete(callback);
          else removers.get(callback)!();
        };
        for (let i = 0; i < 20; i++) add(make());
        for (let round = 0; round < 4; round++) {
          if (kind === "set") {
            set.forEach((callback) => {
              callback();
            });
          } else {
            list.callAll();
          }
          log.push(-1);
          assert.equal(kind === "set" ? set.size : list.size, listed.length);
        }
        return log;
      };
      assert.deepEqual(run("list"), run("set"), `trial ${trial}`);
    }
  });

  test("a remover called twice, or after clear, removes nothing else", () => {
    const list = new CallbackList();
    const called: string[] = [];
    const removeA = list.add(() => called.push("a"));
    list.add(() => called.push("b"));
    removeA();
    removeA();
    assert.equal(list.size, 1);
    list.callAll();
    assert.deepEqual(called, ["b"]);
    list.clear();
    removeA();
    assert.equal(list.size, 0);
    const c = () => called.push("c");
    list.add(c);
    assert.equal(list.delete(c), true);
    assert.equal(list.delete(c), false);
    assert.equal(list.size, 0);
  });
});
