// Logs topic creation and deletion, seen by comparing the engine's topic list once a second
// (WATCH_INTERVAL_MS): the engine has no event hooks yet, and a list of names compared once a
// second costs nothing next to the data path. A topic created and deleted within one interval
// is not seen; the lines say what was found, not the instant it happened.

import type { Engine } from "../engine/mod.ts";
import type { Logger } from "./log.ts";

export const WATCH_INTERVAL_MS = 1000;

export class TopicWatch {
  readonly #engine: Engine;
  readonly #log: Logger;
  #known: Map<string, number>;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(engine: Engine, log: Logger) {
    this.#engine = engine;
    this.#log = log;
    this.#known = this.#topics();
  }

  #topics(): Map<string, number> {
    return new Map(this.#engine.listTopics().map((t) => [t.name, t.partitions]));
  }

  /** Compares the topic list with the last one and logs the difference. */
  check(): void {
    const now = this.#topics();
    for (const [name, partitions] of now) {
      if (!this.#known.has(name)) this.#log.info("topic created", { topic: name, partitions });
    }
    for (const name of this.#known.keys()) {
      if (!now.has(name)) this.#log.info("topic deleted", { topic: name });
    }
    this.#known = now;
  }

  start(): void {
    this.#timer = setInterval(() => this.check(), WATCH_INTERVAL_MS);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
