// The producing half of ack_stages.ts, in a worker thread of its own (as the harness runs its
// producers in a load worker apart from its consumers): {port, topic, rate, seconds, size,
// producers} → sends `rate` records a second of `size` bytes round-robin over the topic's
// partitions with producers acks all, lingerMs 5, for `seconds`, then {sent}.

import { Producer } from "../../protocol/client/mod.ts";

const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
};

/** Records due are sent this often. */
const PACE_TICK_MS = 5;

scope.onmessage = async (event: MessageEvent) => {
  const { port, topic, rate, seconds, size, producers } = event.data as {
    port: number;
    topic: string;
    rate: number;
    seconds: number;
    size: number;
    producers: number;
  };
  const value = new Uint8Array(size).fill(97);
  const clients = Array.from(
    { length: producers },
    () => new Producer({ host: "127.0.0.1", port, acks: "all", lingerMs: 5 }),
  );
  const total = rate * seconds;
  const startMs = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - startMs) * rate) / 1000));
    for (; sent < due; sent++) void clients[sent % producers]!.send({ topic, value });
    await new Promise((resolve) => setTimeout(resolve, PACE_TICK_MS));
  }
  await Promise.all(clients.map((client) => client.close()));
  scope.postMessage({ sent });
};
