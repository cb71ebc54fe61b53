// Single active consumer (RabbitMQ's `x-single-active-consumer`): of a queue's members, the
// one that joined earliest and is still there gets every record; the others fetch nothing and
// wait. When it leaves (or its connection closes), whatever it held is given back and the next
// member in join order takes over, starting with those records, so records keep their order
// (given back ones first, oldest first, then new ones). Members are not durable: after a
// restart the first member to join is the active one.

/** The active member among `members` (a Map kept in join order), or null when there is none. */
export function activeMember(members: ReadonlyMap<string, number>): string | null {
  for (const memberId of members.keys()) return memberId;
  return null;
}
