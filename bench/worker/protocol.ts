// The coordinator ↔ load worker protocol: length-prefixed JSON frames over one TCP connection
// (a local worker listens on 127.0.0.1:0; a remote one where `sluice bench worker --listen`
// says). Small and text-based on purpose: a few frames a second carry commands and reports.
//
//   frame = length (u32, big-endian, bytes of the body) ++ body (UTF-8 JSON object)
//
// A session, after the TCP connect:
//
//   worker      → {type:"challenge", nonce, version, pid, host, runtime, cores}
//   coordinator → {id, type:"hello", proof}   proof = HMAC-SHA256(token, nonce), hex
//   worker      → {id, ok:true} | {id, ok:false, error} and closes (wrong proof or version)
//   coordinator → {id, type:"clock"}  ×5     worker → {id, ok, nowMs}  (offset estimate)
//   coordinator → {id, type:"setup", ...}    driver, options, topics, clients, clock offset
//   coordinator → {id, type:"clients"}       consumers, then producers
//   coordinator → {id, type:"start"|"rate", ratePerSecond} | {id, type:"stop"}
//   coordinator → {id, type:"report"}        worker → {id, ok, report}
//   coordinator → {id, type:"close"}         worker → {id, ok, problems}; the session ends
//
// Every request carries an id and gets exactly one answer with that id: {ok:true, ...} or
// {ok:false, error}. Frames before the hello is accepted are limited to
// PREAUTH_FRAME_BYTES_MAX, every frame to FRAME_BYTES_MAX; a bigger length closes the
// connection before anything is allocated for it.

import { Buffer } from "node:buffer";
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Socket } from "node:net";

export const PROTOCOL_VERSION = 1;
export const FRAME_HEADER_BYTES = 4;
export const FRAME_BYTES_MAX = 64 * 1024 * 1024;
export const PREAUTH_FRAME_BYTES_MAX = 4 * 1024;
export const NONCE_BYTES = 32;
/** The environment variable holding the shared token of remote workers. */
export const TOKEN_ENV = "SLUICE_BENCH_TOKEN";
/**
 * Where a spawned worker puts its working directories: inside the coordinator's, so they go
 * with it even when the worker is killed.
 */
export const TMPDIR_ENV = "SLUICE_BENCH_WORKER_TMPDIR";

export type Message = { [key: string]: unknown };

/** A frame that cannot be read: the connection is closed with this as the reason. */
export class FrameError extends Error {
  override name = "FrameError";
}

/** Encodes one frame. */
export function encodeFrame(message: Message): Uint8Array {
  const body = new TextEncoder().encode(JSON.stringify(message));
  if (body.length > FRAME_BYTES_MAX) {
    throw new RangeError(`frame of ${body.length} bytes exceeds ${FRAME_BYTES_MAX}`);
  }
  const frame = new Uint8Array(FRAME_HEADER_BYTES + body.length);
  new DataView(frame.buffer).setUint32(0, body.length);
  frame.set(body, FRAME_HEADER_BYTES);
  return frame;
}

export function sendFrame(socket: Socket, message: Message): void {
  if (socket.destroyed) return;
  socket.write(encodeFrame(message));
}

/**
 * Reassembles frames from socket chunks. The body limit can be raised once the peer has
 * authenticated (before that, PREAUTH_FRAME_BYTES_MAX).
 */
export class FrameDecoder {
  bytesMax: number;
  #chunks: Uint8Array[] = [];
  #buffered = 0;

  constructor(bytesMax: number) {
    this.bytesMax = bytesMax;
  }

  /** Takes a chunk; returns the messages it completed. Throws FrameError on a bad frame. */
  push(chunk: Uint8Array): Message[] {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const messages: Message[] = [];
    while (this.#buffered >= FRAME_HEADER_BYTES) {
      const head = this.#peek(FRAME_HEADER_BYTES);
      const length = new DataView(head.buffer, head.byteOffset, 4).getUint32(0);
      if (length > this.bytesMax) {
        throw new FrameError(`frame of ${length} bytes exceeds ${this.bytesMax}`);
      }
      if (this.#buffered < FRAME_HEADER_BYTES + length) break;
      const frame = this.#take(FRAME_HEADER_BYTES + length);
      messages.push(parseBody(frame.subarray(FRAME_HEADER_BYTES)));
    }
    return messages;
  }

  #peek(bytes: number): Uint8Array {
    const first = this.#chunks[0]!;
    if (first.length >= bytes) return first.subarray(0, bytes);
    return this.#joined().subarray(0, bytes);
  }

  #take(bytes: number): Uint8Array {
    const all = this.#joined();
    const frame = all.subarray(0, bytes);
    const rest = all.subarray(bytes);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#buffered = rest.length;
    return frame;
  }

  #joined(): Uint8Array {
    if (this.#chunks.length === 1) return this.#chunks[0]!;
    const all = new Uint8Array(this.#buffered);
    let at = 0;
    for (const chunk of this.#chunks) {
      all.set(chunk, at);
      at += chunk.length;
    }
    this.#chunks = [all];
    return all;
  }
}

function parseBody(body: Uint8Array): Message {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(body));
  } catch (error) {
    throw new FrameError(`frame is not JSON: ${(error as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new FrameError("frame is not a JSON object");
  }
  return value as Message;
}

export function newNonce(): string {
  return randomBytes(NONCE_BYTES).toString("hex");
}

/** The proof that the coordinator holds the token: HMAC-SHA256(token, nonce) in hex. */
export function proofOf(token: string, nonce: string): string {
  return createHmac("sha256", token).update(nonce).digest("hex");
}

/** Compares a proof in constant time. */
export function proofMatches(token: string, nonce: string, proof: unknown): boolean {
  if (typeof proof !== "string") return false;
  const expected = Buffer.from(proofOf(token, nonce), "hex");
  const given = Buffer.from(proof, "hex");
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** A clock shared by the coordinator and its workers: epoch milliseconds, sub-ms precise. */
export function epochNowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** host:port, or port alone (then on 127.0.0.1). */
export function parseHostPort(text: string, what: string): { host: string; port: number } {
  const at = text.lastIndexOf(":");
  const host = at < 0 ? "127.0.0.1" : text.slice(0, at).replace(/^\[|\]$/g, "");
  const port = Number(at < 0 ? text : text.slice(at + 1));
  if (host.length === 0 || !Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new RangeError(`${what} '${text}' is not HOST:PORT`);
  }
  return { host, port };
}
