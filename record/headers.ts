// The record header names sluice itself reads (PROTOCOL.md section 7b lists them). Every other
// header is the application's and is stored and delivered untouched.

/** The routing key of a record published to an exchange, ahead of the record key. */
export const ROUTING_KEY_HEADER = "sluice-routing-key";

/**
 * A record's own time to live in a queue, in milliseconds from its timestamp: unsigned decimal
 * digits (engine/queue_ttl.ts). The lower of it and the queue's `messageTtlMs` applies.
 */
export const TTL_HEADER = "sluice-ttl-ms";

/**
 * A record's priority in a queue declared with `priorities` levels: unsigned decimal digits,
 * 0-255, higher first (engine/queue_priority.ts). A value at or above the queue's levels is its
 * highest level; a missing or unreadable value is priority 0, as RabbitMQ treats them.
 */
export const PRIORITY_HEADER = "sluice-priority";
