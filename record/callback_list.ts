// Callbacks that come and go with requests (a long poll's wake-up, a waiting fetch's shutdown
// hook), kept in an array whose entries know their place.
//
// Why not a Set: JavaScriptCore's Set and Map keep what was deleted from them reachable for the
// young-generation collection until the next full one (record/id_table.ts). A callback closes
// over its request (the frame, a view of a 256 KiB receive slab), so each one deleted from a
// long-lived Set carried the request into the old generation. Here a removed entry leaves the
// array at once (the last entry moves into its place), and nothing is left holding it.
//
// Iteration has a Set's rules and order: callbacks are called in the order they were added,
// one removed before its turn is skipped, one added during the iteration is visited. A removed
// entry is blanked (it holds nothing from then on) and the array is compacted, keeping the
// order, once blanks are half of it and no iteration is in progress.

type Entry = { callback: (() => void) | undefined };

export class CallbackList {
  #entries: Entry[] = [];
  #blanks = 0;
  /** Iterations in progress (a callback may start another). */
  #iterating = 0;

  /** Callbacks listed. */
  get size(): number {
    return this.#entries.length - this.#blanks;
  }

  /** Lists `callback` (again, if it is already: each listing is removed on its own). */
  add(callback: () => void): () => void {
    const entry: Entry = { callback };
    this.#entries.push(entry);
    return () => this.#remove(entry);
  }

  /** Removes the first listing of `callback`, if any (a linear search: for rare removals). */
  delete(callback: () => void): boolean {
    const entry = this.#entries.find((e) => e.callback === callback);
    if (entry === undefined) return false;
    this.#remove(entry);
    return true;
  }

  /** Calls `visit` with each callback listed (Set iteration rules, see above). */
  forEach(visit: (callback: () => void) => void): void {
    this.#iterating++;
    try {
      // The length is read at each step: entries added meanwhile are visited.
      for (let i = 0; i < this.#entries.length; i++) {
        const { callback } = this.#entries[i]!;
        if (callback !== undefined) visit(callback);
      }
    } finally {
      this.#iterating--;
      this.#compactIfSparse();
    }
  }

  /** Calls every callback listed (as forEach). */
  callAll(): void {
    this.forEach(call);
  }

  /** Removes every callback. */
  clear(): void {
    for (const entry of this.#entries) entry.callback = undefined;
    this.#entries = [];
    this.#blanks = 0;
  }

  #remove(entry: Entry): void {
    if (entry.callback === undefined) return;
    entry.callback = undefined;
    this.#blanks++;
    this.#compactIfSparse();
  }

  #compactIfSparse(): void {
    if (this.#iterating > 0 || this.#blanks * 2 <= this.#entries.length) return;
    const entries = this.#entries;
    let kept = 0;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      if (entry.callback !== undefined) entries[kept++] = entry;
    }
    entries.length = kept;
    this.#blanks = 0;
  }
}

function call(callback: () => void): void {
  callback();
}
