// What to tell a user whose peer broker was skipped: the one command that gets it running.
// A peer that scripts/peers.sh manages (RabbitMQ, NATS, Redis) is either not installed (then
// `npm run peers -- install NAME` installs and starts it) or installed and not running (then
// `npm run peers -- start NAME`). Whether it is installed is read from the same Debian package
// database peers.sh reads, so the two never disagree.

import { spawnSync } from "node:child_process";

const PACKAGE_OF: Readonly<Record<string, string>> = {
  rabbitmq: "rabbitmq-server",
  nats: "nats-server",
  redis: "redis-server",
};

/** True for the peers `npm run peers` (scripts/peers.sh) installs and starts. */
export function isManagedPeer(driver: string): boolean {
  return Object.hasOwn(PACKAGE_OF, driver);
}

/** Whether the Debian package of a managed peer is installed (false where dpkg is missing). */
export function peerInstalled(driver: string): boolean {
  const pkg = PACKAGE_OF[driver];
  if (pkg === undefined) throw new RangeError(`'${driver}' is not a peer that peers.sh manages`);
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own field syntax.
  const query = spawnSync("dpkg-query", ["-W", "-f=${Status}", pkg], { encoding: "utf8" });
  return query.status === 0 && query.stdout.includes("install ok installed");
}

/** The one command that makes a skipped managed peer available to the next run. */
export function peerCommand(driver: string, installed = peerInstalled(driver)): string {
  return installed ? `npm run peers -- start ${driver}` : `npm run peers -- install ${driver}`;
}
