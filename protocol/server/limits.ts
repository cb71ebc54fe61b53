// The server's limits (PROTOCOL.md section 8): each with its default and the range a caller may
// set it to. `resolveServerLimits` fills in defaults and refuses a value outside its range with
// a RangeError that names the limit and the value, before the server listens.

import { MSGPACK_DEPTH_MAX_LIMIT } from "../codec/msgpack_scan.ts";
import { assert } from "../../record/mod.ts";

export type ServerLimits = {
  /** Largest request frame (payload bytes) after the handshake. */
  frameBytesMax: number;
  /** Largest request frame before the handshake has been answered. */
  handshakeFrameBytesMax: number;
  /** Requests served at once per connection; past it, TOO_MANY_IN_FLIGHT. */
  inFlightMax: number;
  connectionsMax: number;
  /** A connection with no complete frame for this long (and nothing in flight) is closed. */
  idleTimeoutMs: number;
  /** After the handshake, a frame whose size has arrived must arrive whole within this. */
  frameReadTimeoutMs: number;
  requestTimeoutMs: number;
  outboxBytesMax: number;
  /** Answer bytes waiting for sockets over all connections; past it, every connection waits. */
  connectionBuffersBytesMax: number;
  fetchWaitMsMax: number;
  fetchBytesMax: number;
  /**
   * A QueueFetch v2 carrying acks waits at most this long for their fdatasync before it
   * answers, so that its own answer confirms them (0, the default: it answers at once).
   */
  queueFetchAckWaitMs: number;
  /** Partition entries (summed over topics) in one Produce or Fetch request. */
  requestPartitionsMax: number;
  /** Caps on every control API's own body limits (codec/control.ts CONTROL_BODY_LIMITS). */
  controlBodyBytesMax: number;
  controlBodyDepthMax: number;
  controlBodyEntriesMax: number;
};

const KIB = 1024;
const MIB = 1024 * KIB;
/** The longest delay a timer takes (2^31 - 1 ms, about 24.8 days). */
const TIMER_MS_MAX = 2 ** 31 - 1;
const U32_MAX = 2 ** 32 - 1;

export const SERVER_LIMITS_DEFAULT: Readonly<ServerLimits> = Object.freeze({
  frameBytesMax: 64 * MIB,
  handshakeFrameBytesMax: 64 * KIB,
  inFlightMax: 1024,
  connectionsMax: 10_000,
  idleTimeoutMs: 600_000,
  frameReadTimeoutMs: 30_000,
  requestTimeoutMs: 30_000,
  outboxBytesMax: 64 * MIB,
  connectionBuffersBytesMax: 1024 * MIB,
  fetchWaitMsMax: 60_000,
  fetchBytesMax: 64 * MIB,
  // Off until a quiet-machine A/B shows the wait lowers ack p99 (bench/RESULTS.md).
  queueFetchAckWaitMs: 0,
  requestPartitionsMax: 65_536,
  controlBodyBytesMax: 4 * MIB,
  controlBodyDepthMax: 8,
  controlBodyEntriesMax: 32_768,
});

/** The range each limit may be set to, inclusive. */
export const SERVER_LIMITS_RANGE: Readonly<Record<keyof ServerLimits, readonly [number, number]>> =
  Object.freeze({
    frameBytesMax: [1 * KIB, U32_MAX],
    handshakeFrameBytesMax: [64, U32_MAX],
    // The Handshake response carries it as a u16.
    inFlightMax: [1, 65_535],
    connectionsMax: [1, 1_000_000],
    idleTimeoutMs: [1, Number.MAX_SAFE_INTEGER],
    frameReadTimeoutMs: [1, Number.MAX_SAFE_INTEGER],
    requestTimeoutMs: [1, Number.MAX_SAFE_INTEGER],
    outboxBytesMax: [1, Number.MAX_SAFE_INTEGER],
    connectionBuffersBytesMax: [1, Number.MAX_SAFE_INTEGER],
    fetchWaitMsMax: [0, TIMER_MS_MAX],
    fetchBytesMax: [1, U32_MAX],
    // Longer would hold a consumer's records back for a slow disk; a long poll ends on its own.
    queueFetchAckWaitMs: [0, 1_000],
    // A request holds at most 65,535 topics of 65,535 partitions each.
    requestPartitionsMax: [1, 65_535 * 65_535],
    controlBodyBytesMax: [1, U32_MAX],
    controlBodyDepthMax: [1, MSGPACK_DEPTH_MAX_LIMIT],
    controlBodyEntriesMax: [1, U32_MAX],
  });

/** Defaults filled in, every value checked against its range (RangeError naming it). */
export function resolveServerLimits(partial: Partial<ServerLimits> = {}): ServerLimits {
  const limits: ServerLimits = { ...SERVER_LIMITS_DEFAULT };
  for (const [name, value] of Object.entries(partial)) {
    if (value === undefined) continue;
    const range = SERVER_LIMITS_RANGE[name as keyof ServerLimits];
    if (range === undefined) throw new RangeError(`${name} is not a server limit`);
    if (!Number.isSafeInteger(value) || value < range[0] || value > range[1]) {
      throw new RangeError(`${name} ${value} must be an integer in [${range[0]}, ${range[1]}]`);
    }
    limits[name as keyof ServerLimits] = value;
  }
  return limits;
}

for (const [name, value] of Object.entries(SERVER_LIMITS_DEFAULT)) {
  const range = SERVER_LIMITS_RANGE[name as keyof ServerLimits];
  assert(range[0] <= value && value <= range[1], `the default of ${name} is in its range`);
}
