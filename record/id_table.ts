// A table of values by unsigned 32-bit id (a connection's requests by correlation id), for
// entries that come and go with every request.
//
// Why not a Map: JavaScriptCore's Map and Set keep an entry deleted from them reachable for the
// young-generation collection until the next full one, with everything its value holds. A
// request's entry holds its promise's continuation and whatever that holds (frames, batches),
// so each request deleted from a long-lived Map moved its memory into the old generation, where
// only a full collection (the longest pause) frees it. This table is open addressing over two
// arrays with linear probing and backward-shift deletion: a deleted slot is emptied at once, no
// tombstone is left to hold anything.
//
//   ids:    [ 16 ][ -1 ][  2 ][  3 ][ 19 ] ...   slot = id & mask (16 slots), else the next free
//   values: [ v16][    ][ v2 ][ v3 ][ v19] ...   (a delete shifts later entries of the run back)
//
// Ids are compared as numbers; iteration follows slots, not insertion order.

import { assert } from "./errors.ts";

const EMPTY = -1;
const INITIAL_CAPACITY = 16;

export class IdTable<V> {
  #ids: number[] = new Array<number>(INITIAL_CAPACITY).fill(EMPTY);
  #values: (V | undefined)[] = new Array<V | undefined>(INITIAL_CAPACITY).fill(undefined);
  #mask = INITIAL_CAPACITY - 1;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  get(id: number): V | undefined {
    const at = this.#find(id);
    return at === -1 ? undefined : this.#values[at];
  }

  has(id: number): boolean {
    return this.#find(id) !== -1;
  }

  /** Sets `id`'s value (`id` an integer in [0, 2^32)). */
  set(id: number, value: V): void {
    assert(Number.isInteger(id) && id >= 0 && id < 2 ** 32, "an id is an unsigned 32-bit integer");
    const found = this.#find(id);
    if (found !== -1) {
      this.#values[found] = value;
      return;
    }
    // At most half full: probe runs stay short.
    if ((this.#size + 1) * 2 > this.#ids.length) this.#grow();
    this.#place(id, value);
    this.#size++;
  }

  /** Removes `id`; true if it was there. Nothing of its value stays reachable from the table. */
  delete(id: number): boolean {
    let hole = this.#find(id);
    if (hole === -1) return false;
    const ids = this.#ids;
    const values = this.#values;
    const mask = this.#mask;
    // Backward-shift: each later entry of the run whose home slot is not strictly between the
    // hole and it moves into the hole, so every lookup still finds its id without tombstones.
    let next = (hole + 1) & mask;
    while (ids[next] !== EMPTY) {
      const home = homeSlot(ids[next]!, mask);
      const between = hole <= next ? hole < home && home <= next : hole < home || home <= next;
      if (!between) {
        ids[hole] = ids[next]!;
        values[hole] = values[next];
        hole = next;
      }
      next = (next + 1) & mask;
    }
    ids[hole] = EMPTY;
    values[hole] = undefined;
    this.#size--;
    return true;
  }

  clear(): void {
    this.#ids.fill(EMPTY);
    this.#values.fill(undefined);
    this.#size = 0;
  }

  /** Calls `visit` for each entry; the table must not change meanwhile. */
  forEach(visit: (value: V, id: number) => void): void {
    const ids = this.#ids;
    const values = this.#values;
    for (let at = 0; at < ids.length; at++) {
      if (ids[at] !== EMPTY) visit(values[at] as V, ids[at]!);
    }
  }

  /** The values, as an array (a copy: the table may change while it is used). */
  values(): V[] {
    const out: V[] = [];
    this.forEach((value) => {
      out.push(value);
    });
    return out;
  }

  #find(id: number): number {
    const ids = this.#ids;
    const mask = this.#mask;
    for (let at = homeSlot(id, mask); ; at = (at + 1) & mask) {
      const held = ids[at]!;
      if (held === id) return at;
      if (held === EMPTY) return -1;
    }
  }

  #place(id: number, value: V): void {
    const ids = this.#ids;
    const mask = this.#mask;
    let at = homeSlot(id, mask);
    while (ids[at] !== EMPTY) at = (at + 1) & mask;
    ids[at] = id;
    this.#values[at] = value;
  }

  #grow(): void {
    const ids = this.#ids;
    const values = this.#values;
    const capacity = ids.length * 2;
    this.#ids = new Array<number>(capacity).fill(EMPTY);
    this.#values = new Array<V | undefined>(capacity).fill(undefined);
    this.#mask = capacity - 1;
    for (let at = 0; at < ids.length; at++) {
      if (ids[at] !== EMPTY) this.#place(ids[at]!, values[at] as V);
    }
  }
}

/**
 * Where `id`'s probe starts: its low bits. Ids handed out in sequence (correlation ids) then
 * sit each in its own slot while fewer than the capacity are out, found at the first probe.
 */
function homeSlot(id: number, mask: number): number {
  return id & mask;
}
