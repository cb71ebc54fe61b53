// The waits of a consumer's loops (a backoff, a pacing delay, a long poll's stand-in): each ends
// at its timeout or at the next wake-up (data arrived, the assignment changed, close), whichever
// comes first.

/** Waits that a wake-up ends early. */
export class Wakers {
  #waiting = new Set<() => void>();

  /** Resolves after `timeoutMs`, or at the next `wakeAll()` if that comes first. */
  wait(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#waiting.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, timeoutMs);
      this.#waiting.add(wake);
    });
  }

  /** Ends every wait in progress. */
  wakeAll(): void {
    for (const wake of [...this.#waiting]) wake();
  }
}
