// The peer-broker drivers (RabbitMQ, NATS JetStream, Redis Streams, Kafka) against real servers
// on 127.0.0.1, when they run: a produce/consume round trip per driver checks that every payload
// arrives intact, once. A peer that is not running is skipped with the command that starts it
// (`scripts/peers.sh install && scripts/peers.sh start`); Kafka runs only with
// SLUICE_KAFKA_BROKERS set. The tests that need no server (options, unavailability) always run.
//
// Guarantees: all four drivers are at-least-once (a message is acknowledged to the broker after
// its callback ran; a failure redelivers it). A run without failures delivers each message once,
// which is what the round trips assert.

import assert from "node:assert/strict";
import { createServer } from "node:net";
import { describe, test } from "node:test";
import type { Driver } from "../../bench/driver.ts";
import { DriverUnavailableError } from "../../bench/driver.ts";
import { createKafkaDriver } from "../../bench/drivers/kafka.ts";
import { createNatsDriver } from "../../bench/drivers/nats.ts";
import { createRabbitMqDriver } from "../../bench/drivers/rabbitmq.ts";
import { createRedisDriver } from "../../bench/drivers/redis.ts";
import { waitFor } from "../helpers.ts";

/** Payload: 8 bytes the harness owns (a timestamp), the message index, then a derived pattern. */
const PAYLOAD_BYTES = 100;
const TIMESTAMP_BYTES = 8;

function payloadOf(index: number): Uint8Array {
  const payload = new Uint8Array(PAYLOAD_BYTES);
  const view = new DataView(payload.buffer);
  view.setFloat64(0, 1_700_000_000_000 + index);
  view.setUint32(TIMESTAMP_BYTES, index);
  for (let at = TIMESTAMP_BYTES + 4; at < PAYLOAD_BYTES; at++)
    payload[at] = (index * 31 + at) & 255;
  return payload;
}

/** The index of an intact payload, or an assertion error saying what is wrong with it. */
function indexOf(payload: Uint8Array): number {
  assert.equal(payload.byteLength, PAYLOAD_BYTES, "payload length");
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const index = view.getUint32(TIMESTAMP_BYTES);
  // Compared as plain Uint8Arrays: clients hand out Buffers, which deepEqual tells apart.
  const bytes = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  assert.deepEqual(bytes, payloadOf(index), `payload of message ${index}`);
  return index;
}

type RoundTrip = { messages: number; partitions: number; consumers?: number };

/**
 * Creates a topic, `consumers` consumers in one subscription, sends `messages` messages (a third
 * of them keyed) with up to 100 sends outstanding, waits until every one arrived and checks each
 * arrived exactly once, then deletes the topic.
 */
async function roundTrip(driver: Driver, plan: RoundTrip): Promise<void> {
  const topic = `peer-test-${process.pid}-${Date.now()}`;
  await driver.createTopic(topic, plan.partitions);
  const seen = new Uint32Array(plan.messages);
  let received = 0;
  // A callback that throws would be swallowed by the client: keep the first failure instead.
  let failure: unknown = null;
  const onMessage = (payload: Uint8Array) => {
    try {
      seen[indexOf(payload)]! += 1;
      received += 1;
    } catch (error) {
      failure ??= error;
    }
  };
  const consumers = [];
  for (let consumer = 0; consumer < (plan.consumers ?? 1); consumer++) {
    consumers.push(await driver.createConsumer(topic, "sub-a", onMessage));
  }
  const producer = await driver.createProducer(topic);
  const outstandingMax = 100;
  const outstanding = new Set<Promise<void>>();
  for (let index = 0; index < plan.messages; index++) {
    const key = index % 3 === 0 ? new TextEncoder().encode(`key-${index % 7}`) : null;
    const sent = producer.sendAsync(key, payloadOf(index)).then(() => {
      outstanding.delete(sent);
    });
    outstanding.add(sent);
    if (outstanding.size >= outstandingMax) await Promise.race(outstanding);
  }
  await Promise.all(outstanding);
  await waitFor(
    () => received >= plan.messages || failure !== null,
    `${plan.messages} messages`,
    30_000,
  );
  if (failure !== null) throw failure;
  await producer.close();
  for (const consumer of consumers) await consumer.close();
  const missing = [...seen.keys()].filter((index) => seen[index] === 0);
  const repeated = [...seen.keys()].filter((index) => seen[index]! > 1);
  assert.deepEqual(missing, [], "messages never delivered");
  assert.deepEqual(repeated, [], "messages delivered more than once");
  assert.equal(received, plan.messages);
  await driver.deleteTopic(topic);
}

/** false when the driver connects (it is closed again), else the reason to skip. */
async function skipUnlessReachable(driver: Driver): Promise<string | false> {
  try {
    await driver.initialize();
  } catch (error) {
    if (!(error instanceof DriverUnavailableError)) throw error;
    return `${error.message}; ${error.hint}`;
  }
  await driver.close();
  return false;
}

/** Runs `body` with an initialized driver and always closes it. */
async function withDriver(driver: Driver, body: (driver: Driver) => Promise<void>): Promise<void> {
  await driver.initialize();
  try {
    await body(driver);
  } finally {
    await driver.close();
  }
}

/** A loopback port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === "object");
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return address.port;
}

const rabbitSkip = await skipUnlessReachable(createRabbitMqDriver());

describe("rabbitmq driver", () => {
  test("1000 messages over 2 partitions arrive intact, once", { skip: rabbitSkip }, () =>
    withDriver(createRabbitMqDriver(), (driver) =>
      roundTrip(driver, { messages: 1000, partitions: 2 }),
    ),
  );

  test("two consumers of one subscription share its messages", { skip: rabbitSkip }, () =>
    withDriver(createRabbitMqDriver(), (driver) =>
      roundTrip(driver, { messages: 400, partitions: 2, consumers: 2 }),
    ),
  );

  for (const queueType of ["quorum", "stream"]) {
    test(`queue-type=${queueType}: 300 messages arrive intact, once`, { skip: rabbitSkip }, () =>
      withDriver(createRabbitMqDriver({ "queue-type": queueType }), (driver) =>
        roundTrip(driver, { messages: 300, partitions: 2 }),
      ),
    );
  }
});

// The TLS listener that `scripts/peers.sh start rabbitmq` opens beside the plaintext one.
const rabbitTlsSkip = await skipUnlessReachable(createRabbitMqDriver({ tls: "true" }));
if (rabbitTlsSkip !== false) console.warn(`skipping RabbitMQ over TLS: ${rabbitTlsSkip}`);

describe("rabbitmq driver over TLS", () => {
  test("tls=true: 500 messages over AMQPS arrive intact, once", { skip: rabbitTlsSkip }, () =>
    withDriver(createRabbitMqDriver({ tls: "true" }), async (driver) => {
      assert.match(String(driver.settings()["tls"]), /^on, trusting /);
      assert.match(String(driver.settings()["url"]), /^amqps:/);
      await roundTrip(driver, { messages: 500, partitions: 2 });
    }),
  );

  test("tls=true with a CA file that does not exist is unavailable, saying why", async () => {
    const driver = createRabbitMqDriver({ tls: "true", "tls-ca-file": "/nonexistent/ca.pem" });
    await assert.rejects(driver.initialize(), (error: unknown) => {
      assert.ok(error instanceof DriverUnavailableError);
      assert.match(error.message, /\/nonexistent\/ca\.pem/);
      assert.match(error.hint, /peers\.sh start rabbitmq/);
      return true;
    });
  });

  test("tls=true with an amqp:// url, or tls=maybe, is a RangeError", () => {
    assert.throws(
      () => createRabbitMqDriver({ tls: "true", url: "amqp://127.0.0.1:5672" }),
      RangeError,
    );
    assert.throws(() => createRabbitMqDriver({ tls: "maybe" }), RangeError);
  });
});

const natsSkip = await skipUnlessReachable(createNatsDriver());

describe("nats driver", () => {
  test("1000 messages over 2 partitions arrive intact, once", { skip: natsSkip }, () =>
    withDriver(createNatsDriver(), (driver) =>
      roundTrip(driver, { messages: 1000, partitions: 2 }),
    ),
  );

  test("two consumers of one subscription share its messages", { skip: natsSkip }, () =>
    withDriver(createNatsDriver(), (driver) =>
      roundTrip(driver, { messages: 400, partitions: 2, consumers: 2 }),
    ),
  );
});

const redisSkip = await skipUnlessReachable(createRedisDriver());

describe("redis driver", () => {
  test("1000 messages over 2 partitions arrive intact, once", { skip: redisSkip }, () =>
    withDriver(createRedisDriver(), (driver) =>
      roundTrip(driver, { messages: 1000, partitions: 2 }),
    ),
  );

  test("two consumers of one subscription share its messages", { skip: redisSkip }, () =>
    withDriver(createRedisDriver(), (driver) =>
      roundTrip(driver, { messages: 400, partitions: 2, consumers: 2 }),
    ),
  );
});

const kafkaBrokers = process.env["SLUICE_KAFKA_BROKERS"];
const kafkaSkip =
  kafkaBrokers === undefined || kafkaBrokers === ""
    ? "SLUICE_KAFKA_BROKERS is not set (no Kafka broker can be installed here)"
    : await skipUnlessReachable(createKafkaDriver());

describe("kafka driver", () => {
  test("1000 messages over 2 partitions arrive intact, once", { skip: kafkaSkip }, () =>
    withDriver(createKafkaDriver(), (driver) =>
      roundTrip(driver, { messages: 1000, partitions: 2 }),
    ),
  );
});

describe("peer drivers without a server", () => {
  const factories = {
    rabbitmq: (port: number) => createRabbitMqDriver({ url: `amqp://127.0.0.1:${port}` }),
    nats: (port: number) => createNatsDriver({ url: `nats://127.0.0.1:${port}` }),
    redis: (port: number) => createRedisDriver({ url: `redis://127.0.0.1:${port}` }),
    kafka: (port: number) => createKafkaDriver({ brokers: `127.0.0.1:${port}` }),
  };

  for (const [name, factory] of Object.entries(factories)) {
    test(`${name}: a closed port is DriverUnavailableError with a hint`, async () => {
      const driver = factory(await closedPort());
      await assert.rejects(driver.initialize(), (error: unknown) => {
        assert.ok(error instanceof DriverUnavailableError, String(error));
        assert.match(error.message, /not reachable at/);
        assert.match(error.hint, name === "kafka" ? /brokers=/ : /scripts\/peers\.sh start/);
        return true;
      });
      assert.ok(driver.durability().length > 0);
      assert.equal(typeof driver.settings(), "object");
    });
  }

  test("bad option values are a RangeError naming key and value", () => {
    assert.throws(() => createRabbitMqDriver({ "queue-type": "lazy" }), /queue-type=lazy/);
    assert.throws(() => createRabbitMqDriver({ prefetch: "0" }), /prefetch=0/);
    assert.throws(() => createNatsDriver({ storage: "disk" }), /storage=disk/);
    assert.throws(() => createRedisDriver({ count: "many" }), /count=many/);
    assert.throws(() => createKafkaDriver({ brokers: "localhost" }), /localhost/);
  });
});
