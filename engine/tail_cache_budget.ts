// The tail-cache budget: a bound on the bytes of segment chunks (segment.ts: the in-memory tail
// of each active segment) that all segments of a process, or of one engine, hold together.
// Each segment keeps up to its own `tailCacheBytes` of written chunks for readers at the tail;
// without a bound across segments 1,000 partitions would hold 8 GiB of them, and a partition
// no longer written would keep its chunks until its segment rolled.
//
//   holders, least recently appended to ───────────────────► most recently appended to
//   [ b-7: 8 MiB ][ a-0: 1 MiB ][ c-1: 3 MiB ][ a-3: 8 MiB ]      held 20 MiB, max 16 MiB
//   taking a chunk for a-3 asks b-7 to shed 4 MiB of its WRITTEN chunks, oldest first.
//
// A holder sheds only chunks already in the file (readers then take those bytes from the file
// or its mapping), a batch kept in parts leaves whole, and a holder that cannot shed (all its
// bytes unwritten) is passed over: unwritten bytes are the appends in flight, bounded by the
// logs' own pending limits, so the budget may be passed by them until their round is written.
// Each segment's chunks are counted by capacity (a pooled 1 MiB chunk counts 1 MiB however
// little it holds: that is the memory it keeps).

import { assert, IndexedSet } from "../record/mod.ts";

/**
 * The default budget: 256 MiB, 32 segments at the default per-segment 8 MiB. The 16 partitions
 * of a busy topic keep their whole tail cache (128 MiB) with room for a second topic; 1,000
 * partitions share it (about 256 KiB each, the ones written most recently first).
 */
export const TAIL_CACHE_TOTAL_BYTES_DEFAULT = 256 * 1024 * 1024;
/** The smallest budget accepted: one write chunk (segment.ts WRITE_CHUNK_BYTES). */
export const TAIL_CACHE_TOTAL_BYTES_MIN = 1024 * 1024;

/**
 * Holders in a row that had nothing written to shed, after which a walk stops. Holders are
 * walked least recently appended to first, so the ones whose bytes are all unwritten (appended
 * since their last round) come last: a run of them means the rest are alike. Without a stop,
 * 1,000 partitions each holding only an open chunk with unwritten bytes (1,000 MiB counted,
 * nothing to shed) would cost a walk of all 1,000 at every chunk taken and every round written.
 */
export const SHED_MISSES_MAX = 16;

/** A segment as the budget sees it. */
export interface TailCacheHolder {
  /**
   * Drops written chunks, oldest first, until at least `bytes` were given back (through
   * `release`) or nothing written is left in memory.
   */
  shedTailCache(bytes: number): void;
}

/** A holder's bytes and its place in the budget's order (record/indexed_set.ts). */
type Holding = { holder: TailCacheHolder; held: number; indexedAt: number };

export class TailCacheBudget {
  readonly totalBytesMax: number;
  #heldBytes = 0;
  /** Each holder's holding (found by holder; entries come and go with segments, not appends). */
  #holders = new Map<TailCacheHolder, Holding>();
  /**
   * Holdings, least recently appended to first. Not a Map re-inserted at each append:
   * JavaScriptCore's Map rebuilds its table under such churn, and each table left behind
   * outlived young collections (record/indexed_set.ts).
   */
  #order = new IndexedSet<Holding>();
  /** The holder moved last, so that appends to one segment in a row cost one comparison. */
  #newest: TailCacheHolder | undefined;
  /** Holders asked to shed since the budget was made (for tests and metrics). */
  #sheds = 0;

  constructor(totalBytesMax: number) {
    if (!Number.isSafeInteger(totalBytesMax) || totalBytesMax < TAIL_CACHE_TOTAL_BYTES_MIN) {
      throw new RangeError(
        `tailCacheTotalBytes ${totalBytesMax} must be an integer of at least ` +
          `${TAIL_CACHE_TOTAL_BYTES_MIN}`,
      );
    }
    this.totalBytesMax = totalBytesMax;
  }

  /** Bytes of chunks held now by every holder (may pass totalBytesMax by unwritten bytes). */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** Segments holding chunks now. */
  get holderCount(): number {
    return this.#holders.size;
  }

  get sheds(): number {
    return this.#sheds;
  }

  /** Bytes `holder` holds (0 when none). */
  heldBy(holder: TailCacheHolder): number {
    return this.#holders.get(holder)?.held ?? 0;
  }

  /** `holder` was appended to: it becomes the most recently used. */
  touch(holder: TailCacheHolder): void {
    if (this.#newest === holder) return;
    const holding = this.#holders.get(holder);
    if (holding === undefined) return;
    this.#order.moveToBack(holding);
    this.#newest = holder;
  }

  /**
   * `holder` took a chunk of `bytes` for an append: it becomes the most recently used, and
   * others shed written chunks, least recently appended to first, while the total passes the
   * budget. The taker itself is left alone here (its new chunk is being filled); its written
   * chunks are shed at its next `trim`, after its round is written.
   */
  take(holder: TailCacheHolder, bytes: number): void {
    assert(bytes > 0, "a chunk holds bytes");
    let holding = this.#holders.get(holder);
    if (holding === undefined) {
      holding = { holder, held: 0, indexedAt: -1 };
      this.#holders.set(holder, holding);
    }
    holding.held += bytes;
    this.#order.moveToBack(holding);
    this.#newest = holder;
    this.#heldBytes += bytes;
    if (this.#heldBytes > this.totalBytesMax) this.#shed(holder);
  }

  /** `holder` dropped chunks of `bytes` (written and shed, sealed, closed or truncated). */
  release(holder: TailCacheHolder, bytes: number): void {
    const holding = this.#holders.get(holder);
    assert(holding !== undefined && holding.held >= bytes, "a holder releases only bytes it took");
    this.#heldBytes -= bytes;
    holding.held -= bytes;
    if (holding.held === 0) {
      this.#holders.delete(holder);
      this.#order.delete(holding);
      if (this.#newest === holder) this.#newest = undefined;
    }
    assert(this.#heldBytes >= 0, "held bytes never go negative");
  }

  /** Sheds written chunks past the budget, any holder's (after a round made some written). */
  trim(): void {
    if (this.#heldBytes > this.totalBytesMax) this.#shed(undefined);
  }

  /**
   * Asks holders, least recently appended to first, to shed what passes the budget; a holder
   * with nothing written to shed is passed over, and the walk stops after SHED_MISSES_MAX of
   * those in a row (see there), so it costs a bounded number of visits beyond the holders that
   * gave bytes back.
   */
  #shed(using: TailCacheHolder | undefined): void {
    let misses = 0;
    for (const { holder } of this.#order.values()) {
      const over = this.#heldBytes - this.totalBytesMax;
      if (over <= 0) return;
      if (holder === using) continue;
      this.#sheds++;
      holder.shedTailCache(over);
      if (this.#heldBytes - this.totalBytesMax < over) {
        misses = 0;
      } else if (++misses >= SHED_MISSES_MAX) {
        return;
      }
    }
  }
}

/** The budget shared by logs and engines opened without one of their own. */
let sharedBudget: TailCacheBudget | undefined;

export function sharedTailCacheBudget(): TailCacheBudget {
  sharedBudget ??= new TailCacheBudget(TAIL_CACHE_TOTAL_BYTES_DEFAULT);
  return sharedBudget;
}

assert(TAIL_CACHE_TOTAL_BYTES_DEFAULT >= TAIL_CACHE_TOTAL_BYTES_MIN, "the default is a budget");
