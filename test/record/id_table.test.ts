import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { IdTable } from "../../record/mod.ts";
import { mulberry32 } from "../helpers.ts";

describe("IdTable", () => {
  test("agrees with a Map over random sets and deletes, ids colliding and spread", () => {
    const random = mulberry32(16_032);
    // Ids that share their low bits collide (the table probes from the low bits): long runs,
    // probed through and shifted back on delete; ids spread to 2^32 check the high bit.
    const colliding = () => Math.floor(random() * 64) * 4096 + Math.floor(random() * 3);
    const spread = () => Math.floor(random() * 2 ** 32);
    for (const draw of [colliding, spread]) {
      const table = new IdTable<string>();
      const model = new Map<number, string>();
      for (let step = 0; step < 20_000; step++) {
        const id = draw();
        const roll = random();
        if (roll < 0.5) {
          table.set(id, `v${step}`);
          model.set(id, `v${step}`);
        } else if (roll < 0.9) {
          assert.equal(table.delete(id), model.delete(id), `delete ${id} at step ${step}`);
        } else {
          assert.equal(table.get(id), model.get(id), `get ${id} at step ${step}`);
          assert.equal(table.has(id), model.has(id));
        }
        assert.equal(table.size, model.size);
      }
      const seen = new Map<number, string>();
      table.forEach((value, id) => {
        seen.set(id, value);
      });
      assert.deepEqual(
        [...seen].sort((a, b) => a[0] - b[0]),
        [...model].sort((a, b) => a[0] - b[0]),
      );
      assert.deepEqual(table.values().sort(), [...model.values()].sort());
      table.clear();
      assert.equal(table.size, 0);
      for (const id of model.keys()) assert.equal(table.get(id), undefined);
    }
  });

  test("sequential ids wrapping at 2^32 are found, deleted out of order", () => {
    const table = new IdTable<number>();
    const ids: number[] = [];
    for (let i = 0; i < 1000; i++) ids.push((2 ** 32 - 500 + i) % 2 ** 32);
    for (const id of ids) table.set(id, id);
    assert.equal(table.size, 1000);
    for (let i = 0; i < ids.length; i += 2) assert.equal(table.delete(ids[i]!), true);
    for (let i = 0; i < ids.length; i++)
      assert.equal(table.get(ids[i]!), i % 2 === 0 ? undefined : ids[i]);
    assert.equal(table.size, 500);
  });

  test("an id outside [0, 2^32) is refused", () => {
    const table = new IdTable<number>();
    assert.throws(() => table.set(-1, 0), /unsigned 32-bit/);
    assert.throws(() => table.set(2 ** 32, 0), /unsigned 32-bit/);
    assert.throws(() => table.set(1.5, 0), /unsigned 32-bit/);
  });
});
