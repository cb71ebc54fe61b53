// The record header names sluice itself reads (PROTOCOL.md section 7b lists them). Every other
// header is the application's and is stored and delivered untouched.

/** The routing key of a record published to an exchange, ahead of the record key. */
export const ROUTING_KEY_HEADER = "sluice-routing-key";

/**
 * A record's own time to live in a queue, in milliseconds from its timestamp: unsigned decimal
 * digits (engine/queue_ttl.ts). The lower of it and the queue's `messageTtlMs` applies.
 */
export const TTL_HEADER = "sluice-ttl-ms";
