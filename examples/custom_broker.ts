// The sluice engine as the storage core of another broker: a small HTTP front of its own, with
// sluice keeping the logs (segments, indexes, fsync, crash recovery). Run it and talk to it:
//
//   bun examples/custom_broker.ts [DIR] [PORT]
//   deno run --allow-read --allow-write --allow-env --allow-net --deny-ffi \
//     examples/custom_broker.ts [DIR] [PORT]
//
//   curl -X POST 'localhost:8080/topics/orders?partitions=2'       create a topic
//   curl --data 'apple' 'localhost:8080/topics/orders/0?key=k1'    append: {"offset":0}
//   curl 'localhost:8080/topics/orders/0?offset=0'                 read from offset 0
//
// It prints `custom broker listening on http://HOST:PORT` (PORT 0 picks a free one) and stops
// cleanly on SIGINT or SIGTERM.

import { Buffer } from "node:buffer";
import { mkdtempSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  decodeRecordBatches,
  Engine,
  encodeRecordBatch,
  isSluiceError,
  type SluiceErrorCode,
} from "sluice/engine";

const READ_BYTES_MAX = 1024 * 1024;
const BODY_BYTES_MAX = 1024 * 1024;
/** HTTP statuses for the engine's error codes; any other failure is a 400 or, for I/O, a 500. */
const STATUS: Partial<Record<SluiceErrorCode, number>> = {
  UNKNOWN_TOPIC: 404,
  UNKNOWN_PARTITION: 404,
  OFFSET_OUT_OF_RANGE: 416,
  TOPIC_EXISTS: 409,
  DISK_FULL: 507,
  IO_ERROR: 500,
};

const engine = await Engine.open(process.argv[2] ?? mkdtempSync(join(tmpdir(), "broker-")));
const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function bodyOf(request: IncomingMessage): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bytes > BODY_BYTES_MAX) throw new RangeError(`body over ${BODY_BYTES_MAX} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** POST /topics/T?partitions=N, POST /topics/T/P?key=K (body: value), GET /topics/T/P?offset=O */
async function handle(request: IncomingMessage, url: URL): Promise<unknown> {
  const [, root, topic, partitionText] = url.pathname.split("/");
  if (root !== "topics" || topic === undefined) throw new RangeError(`no route ${url.pathname}`);
  if (partitionText === undefined) {
    const partitions = Number(url.searchParams.get("partitions") ?? 1);
    await engine.createTopic(topic, { partitions });
    return { topic, partitions };
  }
  const partition = Number(partitionText);
  if (request.method === "POST") {
    const key = url.searchParams.get("key");
    const value = await bodyOf(request);
    const batch = encodeRecordBatch([{ key: key === null ? null : encoder.encode(key), value }]);
    const { baseOffset } = await engine.append(topic, partition, batch);
    return { offset: baseOffset };
  }
  const offset = Number(url.searchParams.get("offset") ?? 0);
  const records = [];
  for (const view of engine.read(topic, partition, offset, READ_BYTES_MAX).views) {
    for (const batch of decodeRecordBatches(view)) {
      for (const { offset: at, key, value, timestamp } of batch.records) {
        if (at < offset) continue; // a read starts at the batch that holds `offset`
        const text = (bytes: Uint8Array | null) => (bytes === null ? null : decoder.decode(bytes));
        records.push({ offset: at, key: text(key), value: text(value), timestamp });
      }
    }
  }
  return records;
}

function respond(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json" });
  response.end(`${JSON.stringify(body)}\n`);
}

const server = createServer((request, response) => {
  const url = new URL(request.url ?? "/", "http://localhost");
  handle(request, url).then(
    (body) => respond(response, 200, body),
    (error: Error) => {
      // The engine's operational errors carry a code; bad arguments are TypeError/RangeError.
      const code = isSluiceError(error) ? error.code : error.name;
      const status = isSluiceError(error) ? (STATUS[error.code] ?? 400) : 400;
      respond(response, status, { code, message: error.message });
    },
  );
});
server.listen(Number(process.argv[3] ?? 8080), "127.0.0.1", () => {
  const address = server.address() as { address: string; port: number };
  console.log(`custom broker listening on http://${address.address}:${address.port}`);
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    server.close();
    void engine.close().then(() => process.exit(0));
  });
}
