// The authorization check of the data path (Produce, Fetch, QueueFetch, QueueAck) without
// allocation: the names in a binary body are compared in place, as bytes, with the names this
// connection was already decided for, and only a name seen for the first time is decoded and
// checked against the ACLs.
//
//   body bytes ─► scan to each topic:string ─► cache hit (same bytes, same ACL version)?
//                                                 yes: the cached decision, nothing allocated
//                                                 no:  decode, Authorizer.allowed, remember
//
// A body the scan cannot walk (a count or a length past its end) is INVALID_REQUEST, as the
// handler would answer it: nothing is served from a body the check could not read whole.

import { ProtocolError } from "../codec/errors.ts";
import type { Reader } from "../codec/wire.ts";
import type { Authorizer, Operation, ResourceType } from "./acl.ts";
import type { BinaryLayout } from "./_auth_table.ts";

/** Decisions remembered per connection; past this the cache starts over. */
export const DECISIONS_PER_CONNECTION_MAX = 256;

type Decision = { bytes: Uint8Array; type: ResourceType; operation: Operation; allowed: boolean };

const decoder = new TextDecoder("utf-8", { fatal: true });

/** A denied name: the request is refused naming it and the operation. */
export type Denial = { type: ResourceType; name: string; operation: Operation };

/** The ACL resource name of the default exchange (the exchange named ""). */
export const DEFAULT_EXCHANGE = "amq.default";

export class DecisionCache {
  #decisions: Decision[] = [];
  #version = -1;

  /** Undefined when every name in the body is allowed, else the first denied one. */
  check(
    body: Reader,
    layout: BinaryLayout,
    rule: { type: ResourceType; operation: Operation },
    who: { authorizer: Authorizer; principal: string },
  ): Denial | undefined {
    if (this.#version !== who.authorizer.version) {
      this.#decisions.length = 0;
      this.#version = who.authorizer.version;
    }
    const bytes = body.bytes;
    const end = body.end;
    let at = body.position;
    // ExchangePublish: acks:i8 timeout_ms:u32, then the exchange's name. The default exchange
    // (the empty name) is the resource `amq.default`, as RabbitMQ names it in permissions.
    if (layout === "exchangePublish") {
      if (u16(bytes, at + 5, end) !== 0) return this.#decide(bytes, at + 5, end, rule, who);
      const allowed = who.authorizer.allowed(
        who.principal,
        rule.type,
        DEFAULT_EXCHANGE,
        rule.operation,
      );
      return allowed ? undefined : { ...rule, name: DEFAULT_EXCHANGE };
    }
    if (layout === "queueFetch") at += 12;
    if (layout === "queueAck" || layout === "queueFetch") {
      return this.#decide(bytes, at, end, rule, who);
    }
    at += layout === "produce" ? 5 : 12;
    const topics = u16(bytes, at, end);
    at += 2;
    for (let t = 0; t < topics; t++) {
      const denied = this.#decide(bytes, at, end, rule, who);
      if (denied !== undefined) return denied;
      at += 2 + u16(bytes, at, end);
      const partitions = u16(bytes, at, end);
      at += 2;
      if (layout === "fetch") {
        at += partitions * 16;
        continue;
      }
      for (let p = 0; p < partitions; p++) at += 8 + u32(bytes, at + 4, end);
    }
    if (at > end) throw ProtocolError.invalid(`the body's partitions run past its end ${end}`);
    return undefined;
  }

  #decide(
    bytes: Uint8Array,
    at: number,
    end: number,
    rule: { type: ResourceType; operation: Operation },
    who: { authorizer: Authorizer; principal: string },
  ): Denial | undefined {
    const length = u16(bytes, at, end);
    const start = at + 2;
    if (start + length > end) throw ProtocolError.invalid("a name runs past the end of the body");
    for (const decision of this.#decisions) {
      if (decision.operation !== rule.operation || decision.type !== rule.type) continue;
      if (!sameBytes(decision.bytes, bytes, start, length)) continue;
      return decision.allowed ? undefined : denial(decision, rule);
    }
    const view = bytes.subarray(start, start + length);
    let name: string;
    try {
      name = decoder.decode(view);
    } catch {
      throw ProtocolError.invalid("a name is not valid UTF-8");
    }
    const allowed = who.authorizer.allowed(who.principal, rule.type, name, rule.operation);
    if (this.#decisions.length >= DECISIONS_PER_CONNECTION_MAX) this.#decisions.length = 0;
    this.#decisions.push({ bytes: view.slice(), ...rule, allowed });
    return allowed ? undefined : { ...rule, name };
  }
}

function denial(decision: Decision, rule: { type: ResourceType; operation: Operation }): Denial {
  return { ...rule, name: decoder.decode(decision.bytes) };
}

function sameBytes(a: Uint8Array, bytes: Uint8Array, start: number, length: number): boolean {
  if (a.length !== length) return false;
  for (let i = 0; i < length; i++) if (a[i] !== bytes[start + i]) return false;
  return true;
}

function u16(bytes: Uint8Array, at: number, end: number): number {
  if (at + 2 > end) throw ProtocolError.invalid(`the body ends at ${end}, before a count`);
  return (bytes[at]! << 8) | bytes[at + 1]!;
}

function u32(bytes: Uint8Array, at: number, end: number): number {
  if (at + 4 > end) throw ProtocolError.invalid(`the body ends at ${end}, before a length`);
  return bytes[at]! * 0x1000000 + ((bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!);
}
