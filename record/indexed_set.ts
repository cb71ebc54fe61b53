// A set of long-lived objects that come and go often (a producer's partitions with batches
// waiting), each member keeping its own place in the set's array (`indexedAt`, -1 when out).
//
// Why not a Set: JavaScriptCore's Set and Map rebuild their table as members are deleted and
// added, and the tables left behind stay reachable for the young-generation collection until
// the next full one (record/id_table.ts says why the same holds for deleted members). A
// producer moving its partitions to the back of a Set at 10,000 one-record batches a second
// left ~5,000 tables a second (~6 MB) for the old generation. Here add, delete and moving to
// the back write one array slot and the member's index: nothing is allocated while the array
// has room.
//
// Iteration has a Set's rules and order: members are visited in the order they were added
// (moving to the back counts as adding), one deleted before its turn is skipped, one added
// during the iteration is visited. A deleted member's slot is blanked, and the array compacted,
// keeping the order, once blanks are half of it and no iteration is in progress.
//
// A member is in at most one IndexedSet at a time (its one `indexedAt` says where).

/** What a member carries: its slot in the set's array, -1 while it is in none. */
export interface Indexed {
  indexedAt: number;
}

/** Blanks tolerated before compaction is considered (small sets never compact). */
const COMPACT_MIN_BLANKS = 16;

export class IndexedSet<T extends Indexed> {
  #slots: (T | undefined)[] = [];
  #blanks = 0;
  /** No member before this slot: `first` and walks start here, not at a run of blanks. */
  #head = 0;
  /** Iterations in progress (a visit may start another). */
  #iterating = 0;

  /** Members in the set. */
  get size(): number {
    return this.#slots.length - this.#blanks;
  }

  has(member: T): boolean {
    const at = member.indexedAt;
    return at >= 0 && this.#slots[at] === member;
  }

  /** Adds `member` at the back; one already in keeps its place. */
  add(member: T): void {
    if (this.has(member)) return;
    if (member.indexedAt >= 0) {
      throw new RangeError(`member is in another IndexedSet (indexedAt ${member.indexedAt})`);
    }
    member.indexedAt = this.#slots.length;
    this.#slots.push(member);
  }

  /** Removes `member`; false when it was not in the set. */
  delete(member: T): boolean {
    if (!this.has(member)) return false;
    this.#slots[member.indexedAt] = undefined;
    member.indexedAt = -1;
    this.#blanks++;
    this.#compactIfSparse();
    return true;
  }

  /** Moves `member` (in the set or not) to the back, as `delete` then `add` would. */
  moveToBack(member: T): void {
    if (this.has(member)) {
      // Already last: nothing to move, unless a walk is on (a Set's walk would visit it again).
      if (member.indexedAt === this.#slots.length - 1 && this.#iterating === 0) return;
      this.#slots[member.indexedAt] = undefined;
      this.#blanks++;
      member.indexedAt = -1;
    }
    this.add(member);
    this.#compactIfSparse();
  }

  /** Calls `visit` with each member (Set iteration rules, see above). */
  forEach(visit: (member: T) => void): void {
    this.#iterating++;
    try {
      // The length is read at each step: members added meanwhile are visited.
      for (let i = this.#head; i < this.#slots.length; i++) {
        const member = this.#slots[i];
        if (member !== undefined) visit(member);
      }
    } finally {
      this.#iterating--;
      this.#compactIfSparse();
    }
  }

  /**
   * The members in order, as `forEach` visits them, for walks that stop early (a generator:
   * for rare walks, not per message). A walk runs to its end or is left by `break`/`return`
   * (for-of closes the generator): one left open would keep the set from compacting.
   */
  *values(): Generator<T, void, undefined> {
    this.#iterating++;
    try {
      for (let i = this.#head; i < this.#slots.length; i++) {
        const member = this.#slots[i];
        if (member !== undefined) yield member;
      }
    } finally {
      this.#iterating--;
      this.#compactIfSparse();
    }
  }

  /** The member at the front (added or moved to the back longest ago), if any. */
  first(): T | undefined {
    const slots = this.#slots;
    let at = this.#head;
    while (at < slots.length && slots[at] === undefined) at++;
    this.#head = at;
    return slots[at];
  }

  /** The members in order, in a new array (for walks that change the set). */
  toArray(): T[] {
    const members: T[] = [];
    const slots = this.#slots;
    for (let i = this.#head; i < slots.length; i++) {
      const member = slots[i];
      if (member !== undefined) members.push(member);
    }
    return members;
  }

  clear(): void {
    const slots = this.#slots;
    for (let i = this.#head; i < slots.length; i++) {
      const member = slots[i];
      if (member === undefined) continue;
      member.indexedAt = -1;
      slots[i] = undefined;
      this.#blanks++;
    }
    // Blanked, not cut, while a walk is in progress: it goes on to members added after this.
    this.#compactIfSparse();
    if (this.#iterating === 0) {
      slots.length = 0;
      this.#blanks = 0;
      this.#head = 0;
    }
  }

  #compactIfSparse(): void {
    const slots = this.#slots;
    if (this.#iterating > 0 || this.#blanks < COMPACT_MIN_BLANKS) return;
    if (this.#blanks * 2 < slots.length) return;
    let kept = 0;
    for (let i = 0; i < slots.length; i++) {
      const member = slots[i];
      if (member === undefined) continue;
      member.indexedAt = kept;
      slots[kept++] = member;
    }
    slots.length = kept;
    this.#blanks = 0;
    this.#head = 0;
  }
}
