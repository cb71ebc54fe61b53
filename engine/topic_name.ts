// The rule for topic (and queue) names, on its own so that everything naming a topic can check
// one without importing the engine. A name becomes a directory name (`<topic>-<partition>`), so
// it is short, ASCII and never a path.

import { SluiceError } from "../record/mod.ts";

/** 249, as Kafka: `<name>-<partition>` then stays within a file system's 255-byte names. */
export const TOPIC_NAME_BYTES_MAX = 249;
const TOPIC_NAME = /^[a-zA-Z0-9._-]+$/;

export function validateTopicName(name: unknown): string {
  if (typeof name !== "string") throw new TypeError("topic name must be a string");
  const reason =
    name.length === 0
      ? "is empty"
      : name.length > TOPIC_NAME_BYTES_MAX
        ? `is longer than ${TOPIC_NAME_BYTES_MAX} characters`
        : !TOPIC_NAME.test(name)
          ? "may hold only ASCII letters, digits, '.', '_' and '-'"
          : name === "." || name === ".."
            ? "cannot be '.' or '..'"
            : name.startsWith("__")
              ? "cannot start with '__' (reserved)"
              : undefined;
  if (reason !== undefined) {
    throw new SluiceError("INVALID_TOPIC", `Topic name '${name}' ${reason}`, { topic: name });
  }
  return name;
}
