// Users (salted, hashed SCRAM credentials: never a password) and ACLs, kept in the data
// directory's metadata as one JSON file written atomically:
//
//   <data>/__meta/security.json
//   { "version": 1,
//     "users": { "alice": { "SCRAM-SHA-256": { salt, iterations, storedKey, serverKey },
//                           "SCRAM-SHA-512": { ... } } },
//     "acls": [ { principal, resourceType, name, pattern, operations, permission } ] }
//
// A running broker holds the directory (its `.lock` names the broker's pid): the store is then
// changed only through the broker (AlterSecurity), and `sluice users|acls --data` refuses to
// write behind its back.

import fs from "node:fs";
import { join } from "node:path";
import { SluiceError } from "../../record/mod.ts";
import { type ScramCredential, type ScramMechanism, SCRAM_MECHANISMS } from "../codec/scram.ts";
import { ACLS_MAX, type Acl, checkAcl, sameAcl } from "./acl.ts";

export const SECURITY_FILE = join("__meta", "security.json");
export const USERS_MAX = 100_000;
/** Longest user name, in bytes of UTF-8 (the SCRAM username and the principal). */
export const USER_NAME_BYTES_MAX = 255;
/** The file is read whole at start: refuse one larger than this. */
const SECURITY_FILE_BYTES_MAX = 64 * 1024 * 1024;

export type UserCredentials = Partial<Record<ScramMechanism, ScramCredential>>;

export type SecurityState = { users: Map<string, UserCredentials>; acls: Acl[] };

function invalid(message: string, value: unknown): never {
  throw new SluiceError("INVALID_CONFIG", message, { value: String(value) });
}

export function checkUserName(name: unknown): string {
  if (typeof name !== "string" || name.length === 0 || name === "*") {
    invalid(`user name ${String(name)} must be a non-empty name other than *`, name);
  }
  if (new TextEncoder().encode(name).length > USER_NAME_BYTES_MAX) {
    invalid(`user name is longer than ${USER_NAME_BYTES_MAX} bytes`, name);
  }
  for (const char of name) {
    if (char.charCodeAt(0) < 0x20) invalid("user name has control characters", name);
  }
  return name;
}

function checkCredential(value: unknown, what: string): ScramCredential {
  const fields = (typeof value === "object" && value !== null ? value : {}) as Record<
    string,
    unknown
  >;
  const text = (key: string) => {
    const field = fields[key];
    if (typeof field !== "string" || !/^[A-Za-z0-9+/]+={0,2}$/.test(field)) {
      invalid(`${what}.${key} must be base64`, field);
    }
    return field;
  };
  const iterations = fields["iterations"];
  if (typeof iterations !== "number" || !Number.isSafeInteger(iterations) || iterations < 4096) {
    invalid(`${what}.iterations must be an integer ≥ 4096`, iterations);
  }
  return {
    salt: text("salt"),
    iterations,
    storedKey: text("storedKey"),
    serverKey: text("serverKey"),
  };
}

/** Checks one user's credentials, as stored or as sent by AlterSecurity. */
export function checkCredentials(value: unknown, user: string): UserCredentials {
  if (typeof value !== "object" || value === null) invalid(`credentials of ${user}`, value);
  const credentials: UserCredentials = {};
  for (const [mechanism, credential] of Object.entries(value)) {
    if (!SCRAM_MECHANISMS.includes(mechanism as ScramMechanism)) {
      invalid(`mechanism ${mechanism} is not one of ${SCRAM_MECHANISMS}`, mechanism);
    }
    credentials[mechanism as ScramMechanism] = checkCredential(credential, `${user}.${mechanism}`);
  }
  if (Object.keys(credentials).length === 0) invalid(`user ${user} has no credential`, user);
  return credentials;
}

export function emptySecurityState(): SecurityState {
  return { users: new Map(), acls: [] };
}

/** Reads `<data>/__meta/security.json`; a missing file is an empty store. */
export function loadSecurityState(dataDir: string): SecurityState {
  const path = join(dataDir, SECURITY_FILE);
  let text: string;
  try {
    if (fs.statSync(path).size > SECURITY_FILE_BYTES_MAX) invalid(`${path} is too large`, path);
    text = fs.readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return emptySecurityState();
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new SluiceError("INVALID_CONFIG", `${path} is not JSON`, { path }, { cause: error });
  }
  const fields = parsed as { version?: unknown; users?: unknown; acls?: unknown };
  if (fields.version !== 1) invalid(`${path} has version ${String(fields.version)}, not 1`, path);
  const users = new Map<string, UserCredentials>();
  for (const [name, credentials] of Object.entries(fields.users ?? {})) {
    users.set(checkUserName(name), checkCredentials(credentials, name));
  }
  const acls = Array.isArray(fields.acls) ? fields.acls.map(checkAcl) : [];
  return { users, acls };
}

/** Writes the store atomically: a temporary file, fsynced, renamed over the old one. */
export function saveSecurityState(dataDir: string, state: SecurityState): void {
  if (state.users.size > USERS_MAX) invalid(`more than ${USERS_MAX} users`, state.users.size);
  if (state.acls.length > ACLS_MAX) invalid(`more than ${ACLS_MAX} ACLs`, state.acls.length);
  const dir = join(dataDir, "__meta");
  fs.mkdirSync(dir, { recursive: true });
  const body = {
    version: 1,
    users: Object.fromEntries([...state.users].sort(([a], [b]) => (a < b ? -1 : 1))),
    acls: state.acls,
  };
  const path = join(dataDir, SECURITY_FILE);
  const temporary = `${path}.tmp`;
  const fd = fs.openSync(temporary, "w", 0o600);
  try {
    fs.writeFileSync(fd, `${JSON.stringify(body, null, 2)}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temporary, path);
  const dirFd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(dirFd);
  } finally {
    fs.closeSync(dirFd);
  }
}

/** Adds `acl` unless the same rule is there; returns whether it was added. */
export function addAcl(state: SecurityState, acl: Acl): boolean {
  if (state.acls.some((existing) => sameAcl(existing, acl))) return false;
  state.acls.push(acl);
  return true;
}

/** Removes the rules equal to `acl`; returns how many. */
export function removeAcl(state: SecurityState, acl: Acl): number {
  const before = state.acls.length;
  state.acls = state.acls.filter((existing) => !sameAcl(existing, acl));
  return before - state.acls.length;
}

/** The pid of a live process holding the data directory, or undefined. */
export function dataDirHolder(dataDir: string): number | undefined {
  let text = "";
  try {
    text = fs.readFileSync(join(dataDir, ".lock"), "utf8");
  } catch {
    return undefined;
  }
  const pid = Number.parseInt(text, 10);
  if (!Number.isSafeInteger(pid) || pid === process.pid) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM" ? pid : undefined;
  }
}
