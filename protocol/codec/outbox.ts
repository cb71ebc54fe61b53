// The write side of one connection, on the server (responses) and on the client (requests): a
// queue of frame chunks written to the socket in order, small chunks coalesced into one write
// (each socket write costs microseconds), large ones (record batches) written as they are. What
// the socket does not take waits for `drain`. Coalescing copies into one buffer reused for every
// write when the socket keeps no reference to what it is given (`writeCopies`: Bun's sockets),
// else into a fresh buffer per write (node:net holds it until sent).
//
//   queue: [hdr 40B][hdr 26B][batches 1 MiB][hdr 26B] ...
//   write 1: hdr+hdr coalesced (66 B)   write 2: the 1 MiB view   write 3: ...
//
// The queue is bounded by the caller: when `queuedBytes` passes its high-water mark the
// connection stops reading requests until the queue drains.
//
// With `coalesceTurn` (the server's listeners), `enqueue` does not write: it schedules one
// flush at the end of the current turn of the event loop (a microtask), so the responses that
// one group commit resolves on one connection go out in one write instead of one each. Nothing
// waits for a timer: the flush runs before the runtime goes back to I/O. The client leaves it
// off; it gathers the frames of one tick itself (client/connection.ts).
//
//   turn: enqueue(a) enqueue(b) enqueue(c) │ microtask: write(a+b+c) → onTurnWritten()

/**
 * A socket as the Outbox sees it, on both sides of the wire: the server's listeners
 * (server/_transport.ts) and the client's sockets (client/socket.ts) each wrap theirs in one.
 */
export interface TransportSocket {
  /** Writes what the socket takes now; the caller keeps the rest until `drain`. */
  write(bytes: Uint8Array): { taken: number; blocked: boolean };
  pause(): void;
  resume(): void;
  /** Half-closes after pending writes; `destroy` closes at once. */
  end(): void;
  destroy(): void;
  readonly remoteAddress: string;
  /**
   * True when every received chunk is a buffer of its own that the transport never reuses, so
   * views of it may be kept (test/protocol/receive_chunks.test.ts checks it for each kind).
   */
  readonly freshChunks?: boolean;
  /**
   * True when `write` keeps no reference to the bytes it is given: what it reports taken is
   * in the kernel (or copied) when it returns, and the rest is the caller's to write again
   * (Bun's sockets, which do not buffer; test/protocol/write_copies.test.ts checks it). The
   * Outbox then coalesces into one staging buffer it reuses; node:net keeps what it is given
   * until sent, so it gets a fresh buffer per coalesced write.
   */
  readonly writeCopies?: boolean;
}

/** Chunks smaller than this are copied together into one write. */
const COALESCE_BYTES_MAX = 64 * 1024;
const EMPTY_BYTES = new Uint8Array(0);

export type OutboxOptions = {
  /** Writes what was enqueued during one turn of the event loop together, at its end. */
  coalesceTurn?: boolean;
  /**
   * Called after a turn-end flush wrote (or tried to write) what the turn enqueued: the owner
   * re-reads `queuedBytes` (its flow control and budget saw the bytes before they went out).
   */
  onTurnWritten?: () => void;
  /**
   * Called with each enqueued chunk once the socket has taken all of it, on sockets that keep
   * no reference to what they write (`writeCopies`) only: its memory may then be reused (the
   * server gives cold-read buffers back so, engine/cold_read.ts). Not called for chunks
   * dropped unwritten (`discard`).
   */
  onChunkWritten?: (chunk: Uint8Array) => void;
};

export class Outbox {
  #socket: TransportSocket;
  #queue: Uint8Array[] = [];
  #head = 0;
  #queuedBytes = 0;
  #blocked = false;
  #coalesceTurn: boolean;
  #onTurnWritten: (() => void) | undefined;
  #onChunkWritten: ((chunk: Uint8Array) => void) | undefined;
  /** A turn-end flush is scheduled and has not run yet. */
  #turnFlushScheduled = false;
  /** Dropped: nothing more is written (the socket was destroyed or closed). */
  #discarded = false;
  bytesWritten = 0;
  /** Calls to the socket's `write`. */
  writes = 0;
  /**
   * The coalescing buffer reused for every write of a `writeCopies` socket, grown to the
   * largest coalesced write (at most COALESCE_BYTES_MAX). A fresh one per write was a copy of
   * every message's bytes left to the collector: about a quarter of what the broker and the
   * producer allocated per message in bench:tcp's latency phase (issue 16).
   */
  #staging: Uint8Array | undefined;
  /** #nextWrite's answer, refilled per write (read before the next call). */
  readonly #next: { bytes: Uint8Array; count: number } = { bytes: EMPTY_BYTES, count: 0 };

  constructor(socket: TransportSocket, options: OutboxOptions = {}) {
    this.#socket = socket;
    this.#coalesceTurn = options.coalesceTurn === true;
    this.#onTurnWritten = options.onTurnWritten;
    this.#onChunkWritten = socket.writeCopies === true ? options.onChunkWritten : undefined;
  }

  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  get idle(): boolean {
    return this.#queuedBytes === 0;
  }

  enqueue(chunks: readonly Uint8Array[]): void {
    if (this.#discarded) return;
    for (const chunk of chunks) {
      if (chunk.length === 0) continue;
      this.#queue.push(chunk);
      this.#queuedBytes += chunk.length;
    }
    if (this.#blocked) return;
    if (!this.#coalesceTurn) {
      this.flush();
      return;
    }
    if (this.#turnFlushScheduled || this.#queuedBytes === 0) return;
    this.#turnFlushScheduled = true;
    queueMicrotask(this.#turnEnd);
  }

  #turnEnd = (): void => {
    this.#turnFlushScheduled = false;
    if (this.#discarded) return;
    // A drain (or a closing owner) may have written everything already in this turn.
    if (!this.#blocked && this.#queuedBytes > 0) this.flush();
    this.#onTurnWritten?.();
  };

  /**
   * Drops what is queued and writes nothing more: the socket is gone (destroyed, or closed by
   * the peer). A graceful end calls `flush` first instead.
   */
  discard(): void {
    this.#discarded = true;
    this.#queuedBytes = 0;
    this.#queue = [];
    this.#head = 0;
  }

  /**
   * Writes until the queue is empty or the socket pushes back: at once, whatever a turn-end
   * flush would do later (on `drain`, and before a graceful end).
   */
  flush(): void {
    if (this.#discarded) return;
    this.#blocked = false;
    while (this.#head < this.#queue.length) {
      const { bytes, count } = this.#nextWrite();
      const { taken, blocked } = this.#socket.write(bytes);
      this.writes++;
      this.#consume(taken, count);
      this.bytesWritten += taken;
      if (blocked) {
        this.#blocked = true;
        return;
      }
    }
    this.#queue = [];
    this.#head = 0;
  }

  /** The next bytes to write and how many queue entries they span. */
  #nextWrite(): { bytes: Uint8Array; count: number } {
    const next = this.#next;
    const first = this.#queue[this.#head]!;
    next.bytes = first;
    next.count = 1;
    if (first.length >= COALESCE_BYTES_MAX) return next;
    let length = 0;
    let count = 0;
    while (this.#head + count < this.#queue.length) {
      const chunk = this.#queue[this.#head + count]!;
      if (length + chunk.length > COALESCE_BYTES_MAX) break;
      length += chunk.length;
      count++;
    }
    if (count === 1) return next;
    const staging = this.#stagingFor(length);
    let at = 0;
    for (let i = 0; i < count; i++) {
      const chunk = this.#queue[this.#head + i]!;
      staging.set(chunk, at);
      at += chunk.length;
    }
    next.bytes = staging;
    next.count = count;
    return next;
  }

  /** A buffer of exactly `length` bytes to coalesce into (see #staging). */
  #stagingFor(length: number): Uint8Array {
    // A fresh buffer per coalesced write where the socket keeps a reference until it is sent.
    if (this.#socket.writeCopies !== true) return new Uint8Array(length);
    let staging = this.#staging;
    if (staging === undefined || staging.length < length) {
      const grown = Math.max(length, Math.min(2 * (staging?.length ?? 0), COALESCE_BYTES_MAX));
      staging = new Uint8Array(grown);
      this.#staging = staging;
    }
    return staging.length === length ? staging : staging.subarray(0, length);
  }

  /** Drops `taken` written bytes from the front of the queue. */
  #consume(taken: number, count: number): void {
    let left = taken;
    for (let i = 0; i < count && left > 0; i++) {
      const chunk = this.#queue[this.#head]!;
      if (left >= chunk.length) {
        left -= chunk.length;
        this.#queuedBytes -= chunk.length;
        this.#queue[this.#head] = EMPTY;
        this.#head++;
        this.#onChunkWritten?.(chunk);
      } else {
        this.#queue[this.#head] = chunk.subarray(left);
        this.#queuedBytes -= left;
        left = 0;
      }
    }
  }
}

const EMPTY = new Uint8Array(0);
