// A committer for the crash test in offset_store.test.ts: it commits offsets in a loop and
// prints one line per acknowledged commit, `<group> <topic> <partition> <offset>`, until the
// parent kills it. Offsets for a key only grow, so the parent can check that each key holds at
// least the last offset it saw acknowledged. Several commits go out per tick so that a kill can
// land inside a shared write, and a small compactAfterBytes makes kills land inside compactions.
//
// Usage: offset_store_child.ts <dir> <offset base>

import { OffsetStore } from "../../engine/offset_store.ts";

/** Stops a child whose parent never killed it. */
const COMMITS_MAX = 200_000;
const COMMITS_PER_TICK = 4;

const [dir, baseText] = process.argv.slice(2);
if (dir === undefined || baseText === undefined) {
  throw new TypeError("usage: offset_store_child.ts <dir> <offset base>");
}
const base = Number(baseText);
const store = await OffsetStore.open(dir, { compactAfterBytes: 2048 });

let sequence = 0;
while (sequence < COMMITS_MAX) {
  const calls: Promise<void>[] = [];
  for (let i = 0; i < COMMITS_PER_TICK; i++) {
    const n = sequence++;
    const group = `g${n % 3}`;
    const topic = `t${n % 5}`;
    const partition = n % 2;
    const offset = base + n;
    const commit = store.commit(group, [{ topic, partition, offset, metadata: `m${n}` }]);
    calls.push(
      commit.then(() => {
        process.stdout.write(`${group} ${topic} ${partition} ${offset}\n`);
      }),
    );
  }
  await Promise.all(calls);
}
await store.close();
