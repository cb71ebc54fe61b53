// Long-polling fetches wait in one registry (protocol/server/_fetch_waits.ts): one data
// listener per partition log and one timer, however many fetches wait, and each fetch answered
// at its deadline or on new data.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeRecordBatch, type PartitionLog } from "../../../engine/mod.ts";
import { readFetchResponse, writeFetchRequest } from "../../../protocol/codec/fetch.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { SluiceServer } from "../../../protocol/server/mod.ts";
import { type FetchWaiter, FetchWaits } from "../../../protocol/server/_fetch_waits.ts";
import { mulberry32, tempDir, waitFor } from "../../helpers.ts";
import { RawClient } from "./raw_client.ts";

function poll(client: RawClient, options: { maxWaitMs: number; fetchOffset: number }): number {
  return client.request(API.Fetch, (w) =>
    writeFetchRequest(w, {
      maxWaitMs: options.maxWaitMs,
      minBytes: 1,
      maxBytes: 1 << 20,
      topics: [
        {
          topic: "t",
          partitions: [{ partition: 0, fetchOffset: options.fetchOffset, partitionMaxBytes: 4096 }],
        },
      ],
    }),
  );
}

/** The record bytes of a fetch answer's only partition. */
async function recordBytes(client: RawClient, id: number): Promise<number> {
  const { errorCode, reader } = await client.response(id);
  assert.equal(errorCode, 0);
  const [partition] = readFetchResponse(reader.raw(reader.remaining)).topics[0]!.partitions;
  assert.equal(partition!.errorCode, 0);
  return partition!.records.reduce((sum, view) => sum + view.length, 0);
}

async function started(dataDir: string) {
  const server = await SluiceServer.start({
    dataDir,
    port: 0,
    engineOptions: { onWarning: () => {} },
    log: () => {},
  });
  await server.engine.createTopic("t", { config: { fsync: "never" } });
  return server;
}

/** Counts the timers armed for longer than `ms` until restore() puts the real timers back. */
function countTimersOver(ms: number): { readonly count: number; restore(): void } {
  let count = 0;
  // tidy: allow-timeout counted, not waited for: the spy passes every timer on unchanged
  const real = globalThis.setTimeout;
  const spy = (handler: () => void, delayMs?: number, ...rest: unknown[]) => {
    if ((delayMs ?? 0) > ms) count++;
    return real(handler, delayMs, ...rest);
  };
  // tidy: allow-timeout the spy above, installed for the test's window
  globalThis.setTimeout = spy as typeof real;
  return {
    get count() {
      return count;
    },
    restore() {
      // tidy: allow-timeout the real timers back
      globalThis.setTimeout = real;
    },
  };
}

const fetchesWaiting = (server: SluiceServer) => server.stats()["waitingFetches"] as number;

const fetchesServed = (server: SluiceServer) =>
  (server.stats()["requests"] as Record<string, number>)[String(API.Fetch)] ?? 0;

describe("waiting fetches", () => {
  test("50 long polls on a partition share one data listener and one timer", async () => {
    using dir = tempDir();
    const server = await started(dir.path);
    const client = await RawClient.connect(server.port);
    try {
      await client.handshake();
      const log: PartitionLog = server.engine.partition("t", 0);
      let listenersAdded = 0;
      const onData = log.onData.bind(log);
      log.onData = (listener) => {
        listenersAdded++;
        return onData(listener);
      };
      // The polls' own waits are 30 s; no other timer of the server or this test is that long.
      const timers = countTimersOver(20_000);
      const ids: number[] = [];
      try {
        for (let i = 0; i < 50; i++) ids.push(poll(client, { maxWaitMs: 30_000, fetchOffset: 0 }));
        await waitFor(() => fetchesServed(server) === 50, "the 50 polls to arrive");
      } finally {
        timers.restore();
      }
      assert.equal(listenersAdded, 1, "one data listener for the log");
      assert.ok(timers.count <= 1, `${timers.count} timers for 50 waiting fetches`);
      await server.engine.append("t", 0, encodeRecordBatch([{ value: new Uint8Array(8) }]));
      for (const id of ids) assert.ok((await recordBytes(client, id)) > 0, `poll ${id}`);
    } finally {
      client.close();
      await server.close(0);
    }
  });

  test("polls answered one after another by new data arm one timer, not one each", async () => {
    using dir = tempDir();
    const server = await started(dir.path);
    const client = await RawClient.connect(server.port);
    try {
      await client.handshake();
      const timers = countTimersOver(20_000);
      try {
        for (let offset = 0; offset < 20; offset++) {
          const served = fetchesServed(server);
          const id = poll(client, { maxWaitMs: 30_000, fetchOffset: offset });
          await waitFor(() => fetchesServed(server) === served + 1, `poll ${offset}`);
          await server.engine.append("t", 0, encodeRecordBatch([{ value: new Uint8Array(8) }]));
          assert.ok((await recordBytes(client, id)) > 0, `poll ${offset} answered`);
        }
      } finally {
        timers.restore();
      }
      assert.ok(timers.count <= 1, `${timers.count} timers for 20 polls in turn`);
    } finally {
      client.close();
      await server.close(0);
    }
  });

  test("a long poll answers empty at its wait, not before; a closed one leaves", async () => {
    using dir = tempDir();
    const server = await started(dir.path);
    const clients = await Promise.all([0, 1, 2].map(() => RawClient.connect(server.port)));
    try {
      for (const client of clients) await client.handshake();
      const log = server.engine.partition("t", 0);
      let listenerChanges = 0;
      const onData = log.onData.bind(log);
      log.onData = (listener) => {
        listenerChanges++;
        return onData(listener);
      };
      const offData = log.offData.bind(log);
      log.offData = (listener) => {
        listenerChanges++;
        offData(listener);
      };
      const waits = [80, 20, 50];
      const sentAt = performance.now();
      const ids = waits.map((maxWaitMs, i) => poll(clients[i]!, { maxWaitMs, fetchOffset: 0 }));
      const answeredAfter = await Promise.all(
        ids.map(async (id, i) => {
          assert.equal(await recordBytes(clients[i]!, id), 0);
          return performance.now() - sentAt;
        }),
      );
      for (const [i, waitMs] of waits.entries()) {
        assert.ok(answeredAfter[i]! >= waitMs, `a ${waitMs} ms wait ended ${answeredAfter[i]}`);
      }
      assert.equal(fetchesWaiting(server), 0, "every answered poll stopped waiting");
      // A poll whose client goes away leaves at once, not at its deadline a minute later.
      const served = fetchesServed(server);
      poll(clients[0]!, { maxWaitMs: 60_000, fetchOffset: 0 });
      await waitFor(() => fetchesServed(server) === served + 1, "the poll to arrive");
      assert.equal(fetchesWaiting(server), 1);
      clients[0]!.close();
      await waitFor(() => fetchesWaiting(server) === 0, "the closed poll to stop waiting");
      // The log's listener, added with its first waiter, stays: none added or removed per wait.
      assert.equal(listenerChanges, 1, "one listener added, for the first of four waits");
    } finally {
      for (const client of clients) client.close();
      await server.close(0);
    }
  });

  test("data on several logs in one turn wakes a waiter once, in that turn", async () => {
    const listeners: (() => void)[] = [];
    const fakeLog = () =>
      ({
        onData: (listener: () => void) => listeners.push(listener),
        offData: () => {},
      }) as unknown as PartitionLog;
    const waits = new FetchWaits(new Set());
    let woken = 0;
    const waiter: FetchWaiter = {
      logs: [fakeLog(), fakeLog(), fakeLog()],
      deadlineMs: performance.now() + 60_000,
      heapIndex: -1,
      onData: () => {
        woken++;
        waits.remove(waiter);
      },
      onTimeUp: () => assert.fail("answered by data, not by its deadline"),
    };
    waits.add(waiter);
    assert.equal(listeners.length, 3);
    for (const listener of listeners) listener();
    assert.equal(woken, 0, "told after the writer's rounds, not inside the writer's");
    // In a microtask queued by the first data, within the turn: no event-loop pass between the
    // data and the answer (a setImmediate here let other sockets' reads and timers go first).
    await Promise.resolve();
    assert.equal(woken, 1);
    assert.equal(waits.size, 0);
    // A waiter that left before the turn ended is not told.
    const gone: FetchWaiter = { ...waiter, heapIndex: -1, onData: () => assert.fail("left") };
    waits.add(gone);
    listeners.at(-1)!();
    waits.remove(gone);
    await new Promise((resolve) => setImmediate(resolve));
    waits.timeUpAll();
  });

  test("a Produce of two partitions reaches a waiting fetch in one answer", async () => {
    using dir = tempDir();
    const server = await started(dir.path);
    await server.engine.createTopic("two", { partitions: 2, config: { fsync: "never" } });
    const client = await RawClient.connect(server.port);
    try {
      await client.handshake();
      const batch = encodeRecordBatch([{ value: new Uint8Array(8) }]);
      // A log's first append waits for its directory's fsync on the thread pool; later ones,
      // as in a steady stream, finish within the turn that made them.
      await Promise.all([0, 1].map((partition) => server.engine.append("two", partition, batch)));
      const partitions = [0, 1].map((partition) => ({
        partition,
        fetchOffset: 1,
        partitionMaxBytes: 4096,
      }));
      const id = client.request(API.Fetch, (w) =>
        writeFetchRequest(w, {
          maxWaitMs: 30_000,
          minBytes: 1,
          maxBytes: 1 << 20,
          topics: [{ topic: "two", partitions }],
        }),
      );
      await waitFor(() => fetchesServed(server) === 1, "the poll to arrive");
      // Two partitions written in one turn, as one Produce request's batches are.
      const appended = [
        server.engine.append("two", 0, batch),
        server.engine.append("two", 1, batch),
      ];
      await Promise.all(appended);
      const { errorCode, reader } = await client.response(id);
      assert.equal(errorCode, 0);
      const answer = readFetchResponse(reader.raw(reader.remaining)).topics[0]!.partitions;
      const bytes = answer.map((p) => p.records.reduce((sum, view) => sum + view.length, 0));
      assert.ok(bytes[0]! > 0 && bytes[1]! > 0, `record bytes per partition: ${bytes}`);
    } finally {
      client.close();
      await server.close(0);
    }
  });

  test("waiters sharing logs: data on a log tells exactly those still waiting on it", async () => {
    const random = mulberry32(16_033);
    // Each fake log keeps the one listener FetchWaits gives it.
    const listenerOf = new Map<PartitionLog, () => void>();
    const logs = Array.from({ length: 6 }, () => {
      const log = {
        onData: (listener: () => void) => listenerOf.set(log, listener),
        offData: () => {},
      } as unknown as PartitionLog;
      return log;
    });
    const waits = new FetchWaits(new Set());
    const told = new Map<FetchWaiter, number>();
    const waiting = new Set<FetchWaiter>();
    let shuttingDown = false;
    const join = () => {
      // Each waits on 1-4 logs, a log sometimes named twice: most logs get further waiters
      // behind their first, which leave from the middle as the waiters are removed.
      const named = Array.from({ length: 1 + Math.floor(random() * 4) }, () => {
        return logs[Math.floor(random() * logs.length)]!;
      });
      // Some keep waiting when told (a fetch whose min_bytes the new data does not reach).
      const keepsWaiting = random() < 0.3;
      const waiter: FetchWaiter = {
        logs: named,
        deadlineMs: performance.now() + 60_000,
        heapIndex: -1,
        onData: () => {
          told.set(waiter, (told.get(waiter) ?? 0) + 1);
          if (keepsWaiting) return;
          waits.remove(waiter);
          waiting.delete(waiter);
        },
        onTimeUp: () => {
          assert.ok(shuttingDown, "answered by data or removed, not by its deadline");
          waits.remove(waiter);
          waiting.delete(waiter);
        },
      };
      waits.add(waiter);
      waiting.add(waiter);
    };
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 20; i++) join();
      for (const waiter of [...waiting]) {
        if (random() < 0.4) {
          waits.remove(waiter);
          waiting.delete(waiter);
        }
      }
      const log = logs[Math.floor(random() * logs.length)]!;
      const expected = [...waiting].filter((waiter) => waiter.logs.includes(log));
      told.clear();
      // Data twice on the log in one turn: each waiter is still told once.
      const logListener = listenerOf.get(log);
      logListener?.();
      logListener?.();
      await Promise.resolve();
      assert.deepEqual(
        new Set(told.keys()),
        new Set(expected),
        `round ${round}: told those waiting on the log`,
      );
      for (const count of told.values()) assert.equal(count, 1, "told once");
      assert.equal(waits.size, waiting.size);
    }
    shuttingDown = true;
    waits.timeUpAll();
    assert.equal(waits.size, 0);
    assert.equal(waiting.size, 0);
  });

  test("deadlines come due in order; a removed waiter never does", async () => {
    const random = mulberry32(16_016);
    let nowMs = 0;
    const hooks = new Set<() => void>();
    const waits = new FetchWaits(hooks, () => nowMs);
    const due: number[] = [];
    const waiters: FetchWaiter[] = [];
    for (let i = 0; i < 300; i++) {
      const waiter: FetchWaiter = {
        logs: [],
        // Due within a second of real time, so the one timer fires soon whatever the draw.
        deadlineMs: Math.floor(random() * 1000) + 1,
        heapIndex: -1,
        onData: () => assert.fail("no log to get data from"),
        onTimeUp: () => {
          due.push(waiter.deadlineMs);
          waits.remove(waiter);
        },
      };
      waiters.push(waiter);
      waits.add(waiter);
    }
    assert.equal(hooks.size, 1, "shutdown can end the waits");
    const removed = new Set<FetchWaiter>();
    for (const waiter of waiters) {
      if (random() < 0.3) {
        removed.add(waiter);
        waits.remove(waiter);
      }
    }
    assert.equal(waits.size, 300 - removed.size);
    // Every deadline is past: the one timer fires and each waiter comes due in turn.
    nowMs = 1_000_000;
    await waitFor(() => waits.size === 0, "every deadline");
    const expected = waiters
      .filter((w) => !removed.has(w))
      .map((w) => w.deadlineMs)
      .sort((a, b) => a - b);
    assert.deepEqual(due, expected);
  });
});
