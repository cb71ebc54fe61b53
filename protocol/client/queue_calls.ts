// The client side of the queue APIs (PROTOCOL.md section 7a): one function per request, each
// writing it with the shared codec (codec/queue_*.ts) and reading the answer as untrusted
// bytes (a response that does not match its grammar is MALFORMED_RESPONSE). A non-zero
// top-level code throws its ServerError, except where the caller needs the per-partition
// results (QueueAck) or decides itself what a code means (QueueFetch, QueueList).

import { errorFromWire, ProtocolError } from "../codec/errors.ts";
import { API } from "../codec/frames.ts";
import {
  type QueueAckRequest,
  type QueueAckResponse,
  type QueueAckResponseV2,
  readQueueAckResponse,
  readQueueAckResponseV2,
  writeQueueAckRequest,
} from "../codec/queue_ack.ts";
import {
  type Outcome,
  type QueueDeclareRequest,
  type QueueInfo,
  type QueueJoinResponse,
  type QueueListResponse,
  readQueueDeclareResponse,
  readQueueDeleteResponse,
  readQueueJoinResponse,
  readQueueLeaveResponse,
  readQueueListResponse,
  readQueuePurgeResponse,
  writeQueueDeclareRequest,
  writeQueueJoinRequest,
  writeQueueLeaveRequest,
  writeQueueListRequest,
  writeQueueNameRequest,
} from "../codec/queue_control.ts";
import {
  type QueueFetchRequest,
  type QueueFetchResponse,
  readQueueFetchResponse,
  writeQueueFetchRequest,
} from "../codec/queue_fetch.ts";
import type { Reader, Writer } from "../codec/wire.ts";
import type { RequestOptions } from "./connection.ts";
import type { Requester } from "./control_calls.ts";
import { ClientError } from "./errors.ts";

/** A ClientConnection or a Session that can hand a response over as views. */
export type ChunkRequester = Requester & {
  requestChunks(
    apiKey: number,
    writeBody: (writer: Writer) => void,
    options?: RequestOptions,
  ): Promise<Uint8Array[]>;
};

function parsed<T>(what: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    throw new ClientError("MALFORMED_RESPONSE", `${what}: ${error.message}`, { cause: error });
  }
}

async function call<T extends Outcome>(
  requester: Requester,
  apiKey: number,
  write: (writer: Writer) => void,
  what: string,
  read: (reader: Reader) => T,
): Promise<T> {
  const reader = await requester.request(apiKey, write);
  const response = parsed(what, () => read(reader));
  if (response.errorCode !== 0) throw errorFromWire(response.errorCode, response.errorMessage);
  return response;
}

export async function declareQueue(
  requester: Requester,
  request: QueueDeclareRequest,
): Promise<QueueInfo> {
  const response = await call(
    requester,
    API.QueueDeclare,
    (writer) => writeQueueDeclareRequest(writer, request),
    "QueueDeclareResponse",
    readQueueDeclareResponse,
  );
  if (response.queue === null) {
    throw new ClientError("MALFORMED_RESPONSE", "QueueDeclareResponse: no queue and no error");
  }
  return response.queue;
}

export async function deleteQueue(requester: Requester, name: string): Promise<void> {
  await call(
    requester,
    API.QueueDelete,
    (writer) => writeQueueNameRequest(writer, { name }),
    "QueueDeleteResponse",
    readQueueDeleteResponse,
  );
}

export async function purgeQueue(requester: Requester, name: string): Promise<number> {
  const response = await call(
    requester,
    API.QueuePurge,
    (writer) => writeQueueNameRequest(writer, { name }),
    "QueuePurgeResponse",
    readQueuePurgeResponse,
  );
  return response.purged;
}

export async function listQueues(
  requester: Requester,
  names: string[] | null,
): Promise<QueueListResponse> {
  const reader = await requester.request(API.QueueList, (writer) =>
    writeQueueListRequest(writer, { names }),
  );
  return parsed("QueueListResponse", () => readQueueListResponse(reader));
}

/** Joins on this very connection: the member lives as long as it does. */
export function joinQueue(requester: Requester, queue: string): Promise<QueueJoinResponse> {
  return call(
    requester,
    API.QueueJoin,
    (writer) => writeQueueJoinRequest(writer, { queue }),
    "QueueJoinResponse",
    readQueueJoinResponse,
  );
}

export async function leaveQueue(
  requester: Requester,
  queue: string,
  memberId: string,
): Promise<number> {
  const response = await call(
    requester,
    API.QueueLeave,
    (writer) => writeQueueLeaveRequest(writer, { queue, memberId }),
    "QueueLeaveResponse",
    readQueueLeaveResponse,
  );
  return response.released;
}

/** Codes come back as numbers: the consumer decides (rejoin on UNKNOWN_MEMBER_ID, ...). */
export async function queueFetch(
  requester: ChunkRequester,
  request: QueueFetchRequest,
  options: RequestOptions,
): Promise<QueueFetchResponse> {
  const body = await requester.requestChunks(
    API.QueueFetch,
    (writer) => writeQueueFetchRequest(writer, request),
    options,
  );
  const version = options.apiVersion ?? 1;
  return parsed("QueueFetchResponse", () => readQueueFetchResponse(body, version));
}

/**
 * QueueAck v2 with no partitions on the fetch connection: answered once every QueueFetch v2
 * ack sent before it on that connection is settled, with where they stand.
 */
export async function queueAckBarrier(
  requester: Requester,
  request: Omit<QueueAckRequest, "partitions">,
): Promise<QueueAckResponseV2> {
  const reader = await requester.request(
    API.QueueAck,
    (writer) => writeQueueAckRequest(writer, { ...request, partitions: [] }),
    { apiVersion: 2, sendNow: true },
  );
  return parsed("QueueAckResponse", () => readQueueAckResponseV2(reader));
}

/** Per-partition codes come back as numbers, for the caller to map onto its answers. */
export async function queueAck(
  requester: Requester,
  request: QueueAckRequest,
): Promise<QueueAckResponse> {
  const reader = await requester.request(API.QueueAck, (writer) =>
    writeQueueAckRequest(writer, request),
  );
  return parsed("QueueAckResponse", () => readQueueAckResponse(reader));
}
