// Queue administration for the Admin client: declare, delete, purge, list. Arguments are
// checked here (TypeError for a wrong type); what the broker refuses throws its ServerError,
// whose message names the setting and the value (QUEUE_EXISTS, INVALID_QUEUE, UNKNOWN_QUEUE).

import { errorFromWire, WIRE_ERRORS } from "../codec/errors.ts";
import type { QueueInfo, QueueSettings, QueueStatsInfo } from "../codec/queue_control.ts";
import * as calls from "./queue_calls.ts";
import type { Session } from "./session.ts";

export type { QueueInfo, QueueSettings, QueueStatsInfo };

/** A queue's settings (as declared) and its counts now. */
export type QueueDescription = QueueInfo & { stats: QueueStatsInfo };

function checkName(name: unknown, what = "queue name"): string {
  if (typeof name !== "string" || name.length === 0) {
    throw new TypeError(`${what} ${String(name)} must be a non-empty string`);
  }
  return name;
}

export function declareQueue(
  session: Session,
  name: string,
  settings: QueueSettings,
): Promise<QueueInfo> {
  checkName(name);
  if (typeof settings !== "object" || settings === null) {
    throw new TypeError("declareQueue() needs settings (an empty object is fine)");
  }
  if (settings.topic !== undefined) checkName(settings.topic, "topic");
  return calls.declareQueue(session, { ...settings, name });
}

export async function deleteQueue(
  session: Session,
  name: string,
  options: { ifExists?: boolean },
): Promise<void> {
  checkName(name);
  try {
    await calls.deleteQueue(session, name);
  } catch (error) {
    const missing = (error as { wireCode?: number }).wireCode === WIRE_ERRORS.UNKNOWN_QUEUE;
    if (!(missing && options.ifExists === true)) throw error;
  }
}

export function purgeQueue(session: Session, name: string): Promise<number> {
  checkName(name);
  return calls.purgeQueue(session, name);
}

/**
 * Every queue (one deleted while listed is left out), or the named ones (a name that is no
 * queue throws UNKNOWN_QUEUE).
 */
export async function listQueues(
  session: Session,
  names: readonly string[] | undefined,
): Promise<QueueDescription[]> {
  if (names !== undefined) {
    if (!Array.isArray(names)) throw new TypeError("listQueues() takes an array of names");
    for (const name of names) checkName(name);
  }
  const response = await calls.listQueues(session, names === undefined ? null : [...names]);
  const queues: QueueDescription[] = [];
  for (const entry of response.queues) {
    if (entry.errorCode !== 0 || entry.config === null || entry.stats === null) {
      if (names === undefined) continue;
      const code = entry.errorCode === 0 ? WIRE_ERRORS.UNKNOWN_SERVER_ERROR : entry.errorCode;
      throw errorFromWire(code, entry.errorMessage ?? `queue ${entry.name}`);
    }
    queues.push({ ...entry.config, stats: entry.stats });
  }
  return queues;
}
