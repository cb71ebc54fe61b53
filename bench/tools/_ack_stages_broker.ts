// The broker half of ack_stages.ts: a SluiceServer in a worker thread (its own event loop, as
// `sluice serve` has) whose queue ack path is stamped, per accepted record, at three points:
//
//   applied   the engine checked and applied the ack (Engine.applyQueueAck / ackQueue called)
//   durable   the engine's promise for it resolved (its group's fdatasync, and every earlier
//             one, ended, and this event loop ran the continuation)
//   told      an answer on the connection carried an acks_durable_through covering it
//             (QueueFetch v2 / QueueAck v2; a v1 QueueAck's answer leaves once durable: told
//             is not stamped for it)
//
// Records are named partition × 2^32 + offset. Times are ms since the epoch with sub-ms
// precision (performance.timeOrigin + performance.now(), comparable across threads). Also
// kept: every commit fdatasync of the queue state log (ms) and this loop's lateness (a 1 ms
// interval timer's delay beyond 1 ms). Messages: {dataDir, compactAfterBytes?,
// spareBytesMax?, fetchAckWaitMs?, syncsInFlight?} → {port};
// {report: true} → {stamps: [key, applied, durable, told][], fsyncMs: number[],
// lagMs: number[]}; {close: true} → {closed}.

import { Engine, type QueueAck } from "../../engine/mod.ts";
import { AckSequence } from "../../protocol/server/_queue_ack_seq.ts";
import { SluiceServer } from "../../protocol/server/mod.ts";

const OFFSET_SPAN = 2 ** 32;
const applied = new Map<number, number>();
const durable = new Map<number, number>();
const told = new Map<number, number>();
const fsyncMs: number[] = [];
const lagMs: number[] = [];
/** The records each durable promise an ack returned stands for. */
const keysOf = new WeakMap<Promise<void>, number[]>();
/** Per connection's ack sequence: sequence → the records it carried. */
const sequenced = new WeakMap<AckSequence, Map<number, number[]>>();
let server: SluiceServer | undefined;

const nowMs = () => performance.timeOrigin + performance.now();

function stamped(acks: readonly QueueAck[], promise: Promise<void>): Promise<void> {
  const at = nowMs();
  const keys: number[] = [];
  for (const ack of acks) {
    if (ack.type !== "accept") continue;
    for (let offset = ack.first; offset <= ack.last; offset++) {
      const key = ack.partition * OFFSET_SPAN + offset;
      keys.push(key);
      if (!applied.has(key)) applied.set(key, at);
    }
  }
  keysOf.set(promise, keys);
  promise.then(
    () => {
      const end = nowMs();
      for (const key of keys) if (!durable.has(key)) durable.set(key, end);
    },
    () => undefined,
  );
  return promise;
}

function patch(): void {
  const engine = Engine.prototype;
  const apply = engine.applyQueueAck;
  engine.applyQueueAck = function (name, memberId, acks) {
    return stamped(acks, apply.call(this, name, memberId, acks));
  };
  const ack = engine.ackQueue;
  engine.ackQueue = function (name, memberId, acks) {
    return stamped(acks, ack.call(this, name, memberId, acks));
  };
  const sequence = AckSequence.prototype;
  const track = sequence.track;
  sequence.track = function (partitions) {
    const seq = track.call(this, partitions);
    if (seq === 0) return seq;
    let bySeq = sequenced.get(this);
    if (bySeq === undefined) {
      bySeq = new Map();
      sequenced.set(this, bySeq);
    }
    bySeq.set(
      seq,
      partitions.flatMap(({ durable }) => keysOf.get(durable) ?? []),
    );
    return seq;
  };
  const take = sequence.take;
  sequence.take = function () {
    const state = take.call(this);
    const bySeq = sequenced.get(this);
    if (bySeq === undefined) return state;
    const at = nowMs();
    for (const [seq, keys] of bySeq) {
      if (seq > state.durableThrough) continue;
      for (const key of keys) if (!told.has(key)) told.set(key, at);
      bySeq.delete(seq);
    }
    return state;
  };
}

function watchLoop(): void {
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    lagMs.push(Math.max(0, now - last - 1));
    last = now;
  }, 1).unref?.();
}

const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
};

scope.onmessage = async (event: MessageEvent) => {
  const message = event.data as Record<string, unknown>;
  if (typeof message["dataDir"] === "string") {
    patch();
    const compact = message["compactAfterBytes"];
    const spare = message["spareBytesMax"];
    const syncs = message["syncsInFlight"];
    const wait = message["fetchAckWaitMs"];
    server = await SluiceServer.start({
      dataDir: message["dataDir"],
      host: "127.0.0.1",
      port: 0,
      limits: typeof wait === "number" ? { queueFetchAckWaitMs: wait } : {},
      engineOptions: {
        ...(typeof compact === "number" ? { queueCompactAfterBytes: compact } : {}),
        ...(typeof spare === "number" ? { queueSpareBytesMax: spare } : {}),
        ...(typeof syncs === "number" ? { queueSyncsInFlight: syncs } : {}),
      },
    });
    const histogram = server.engine.queueFsyncSeconds;
    const observe = histogram.observe.bind(histogram);
    histogram.observe = (seconds: number) => {
      fsyncMs.push(seconds * 1000);
      observe(seconds);
    };
    watchLoop();
    scope.postMessage({ port: server.port });
  } else if (message["report"] === true) {
    const stamps = [...applied].map(([key, at]) => [
      key,
      at,
      durable.get(key) ?? null,
      told.get(key) ?? null,
    ]);
    // Read by name: slotWaits and the slot-wait times are absent on a checkout from before
    // they were counted.
    const log = server?.engine.queue("work").stateLog.stats as
      | {
          writes: number;
          fsyncs: number;
          slotWaits?: number;
          slotWaitMsTotal?: number;
          slotWaitMsMax?: number;
        }
      | undefined;
    const ms = (value: number | undefined) =>
      value === undefined ? undefined : Math.round(value * 1000) / 1000;
    const stateLog = {
      writes: log?.writes,
      fsyncs: log?.fsyncs,
      slotWaits: log?.slotWaits,
      slotWaitMsTotal: ms(log?.slotWaitMsTotal),
      slotWaitMsMax: ms(log?.slotWaitMsMax),
    };
    scope.postMessage({ stamps, fsyncMs, lagMs, stateLog });
  } else if (message["close"] === true) {
    await server?.close();
    scope.postMessage({ closed: true });
  }
};
