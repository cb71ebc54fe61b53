// A standalone amqplib throughput probe, outside the harness: how many persistent 1 KiB
// messages a second RabbitMQ confirms, and delivers, when plain amqplib clients push as fast as
// their confirm windows allow. It is the yardstick for the harness's RabbitMQ figure: the
// harness, with its producers and consumers in worker processes, should reach at least this.
//
//   bun bench/tools/amqplib_baseline.ts [--publishers 4] [--consumers 4] [--queues 16]
//       [--size 1024] [--window 1000] [--seconds 20] [--warmup 5] [--url amqp://...]
//
// Layout as the harness's rabbitmq driver: a direct exchange, one durable classic queue per
// partition, persistent messages through confirm channels (each publisher keeps at most
// `window` unconfirmed), consumers with prefetch 1000 and batched multiple acks. Publishers and
// consumers run in this one process (as a simple client program would). Prints one JSON line.

import amqplib from "amqplib";
import { Buffer } from "node:buffer";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    publishers: { type: "string", default: "4" },
    consumers: { type: "string", default: "4" },
    queues: { type: "string", default: "16" },
    size: { type: "string", default: "1024" },
    window: { type: "string", default: "1000" },
    seconds: { type: "string", default: "20" },
    warmup: { type: "string", default: "5" },
    url: { type: "string", default: "amqp://guest:guest@127.0.0.1:5672" },
  },
});
const number = (name: keyof typeof values) => {
  const value = Number(values[name]);
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`--${name} ${values[name]}`);
  return value;
};
const publishers = number("publishers");
const consumers = number("consumers");
const queues = number("queues");
const size = number("size");
const window = number("window");
const seconds = number("seconds");
const warmup = number("warmup");

const tag = `amqplib-baseline-${process.pid}`;
const admin = await amqplib.connect(values.url!);
const adminChannel = await admin.createChannel();
await adminChannel.assertExchange(tag, "direct", { durable: true });
const queueNames = Array.from({ length: queues }, (_, i) => `${tag}.${i}`);
for (const [i, queue] of queueNames.entries()) {
  await adminChannel.assertQueue(queue, {
    durable: true,
    arguments: { "x-queue-type": "classic" },
  });
  await adminChannel.bindQueue(queue, tag, String(i));
}

let confirmed = 0;
let received = 0;
let running = true;
const connections: amqplib.ChannelModel[] = [];

for (let c = 0; c < consumers; c++) {
  const connection = await amqplib.connect(values.url!, { noDelay: true });
  connections.push(connection);
  const channel = await connection.createChannel();
  await channel.prefetch(1000, false);
  let pending = 0;
  let latest: amqplib.ConsumeMessage | null = null;
  const flush = () => {
    try {
      if (latest !== null) channel.ack(latest, true);
    } catch {
      // Closed at the end of the run: unacknowledged deliveries return to their queues.
    }
    latest = null;
    pending = 0;
  };
  for (const queue of queueNames.filter((_, i) => i % consumers === c)) {
    await channel.consume(queue, (message) => {
      if (message === null) return;
      received++;
      latest = message;
      if (++pending >= 250) flush();
      else if (pending === 1) setImmediate(flush);
    });
  }
}

const body = Buffer.alloc(size, 7);
const publishing: Promise<void>[] = [];
for (let p = 0; p < publishers; p++) {
  const connection = await amqplib.connect(values.url!, { noDelay: true });
  connections.push(connection);
  const channel = await connection.createConfirmChannel();
  publishing.push(
    (async () => {
      let inFlight = 0;
      let next = p;
      let wake: (() => void) | null = null;
      while (running) {
        while (inFlight < window && running) {
          inFlight++;
          channel.publish(tag, String(next++ % queues), body, { persistent: true }, () => {
            inFlight--;
            confirmed++;
            const resume = wake;
            wake = null;
            resume?.();
          });
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    })(),
  );
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
await sleep(warmup * 1000);
const start = { confirmed, received, ms: performance.now(), cpu: process.cpuUsage() };
await sleep(seconds * 1000);
const elapsedS = (performance.now() - start.ms) / 1000;
const cpu = process.cpuUsage(start.cpu);
running = false;
console.log(
  JSON.stringify({
    publishers,
    consumers,
    queues,
    size,
    window,
    confirmedPerSecond: Math.round((confirmed - start.confirmed) / elapsedS),
    receivedPerSecond: Math.round((received - start.received) / elapsedS),
    clientCpuPercent: Math.round(((cpu.user + cpu.system) / 1000 / (elapsedS * 1000)) * 100),
  }),
);
for (const connection of connections) await connection.close().catch(() => {});
for (const queue of queueNames) await adminChannel.deleteQueue(queue);
await adminChannel.deleteExchange(tag);
await admin.close();
process.exit(0);
