// Authentication and authorization on a sluice listener, active when `auth` names at least one
// method (PROTOCOL.md section 11). One object per server; per connection a session kept beside
// the connection (a WeakMap, so connection.ts holds nothing of it).
//
//   open ──► Handshake ──► SaslHandshake ──► SaslAuthenticate ×1..2 ──► authenticated
//   (or a verified client certificate with auth "mtls": authenticated at open)
//
// Before a connection has authenticated: frames are at most `authFrameBytesMax`, at most
// `authRequestsMax` requests are served, every API other than Handshake and SASL is answered
// AUTHENTICATION_REQUIRED and the connection closed, and `handshakeTimeoutMs` after opening it
// is closed. So an unauthenticated client makes the broker hold at most a few frames of a few
// KiB (CVE-2022-34917's lesson). After: every request is checked against the ACLs before its
// handler runs (authorize), through the table of _auth_table.ts.

import { API } from "../codec/frames.ts";
import { ProtocolError } from "../codec/errors.ts";
import { isScramMechanism, ScramServerExchange, verifyPassword } from "../codec/scram.ts";
import type { SaslMechanism } from "../codec/sasl.ts";
import type { ServerConnection, RequestContext } from "./connection.ts";
import { Authorizer, type Operation, type ResourceType } from "./acl.ts";
import { AUTHORIZATION, type AuthRule, metadataTopics, requirementsOf } from "./_auth_table.ts";
import { DecisionCache } from "./_auth_cache.ts";
import { loadSecurityState, type SecurityState } from "./security_store.ts";
import { tlsPeerOf } from "./_tls.ts";

export type AuthMethod = "scram" | "plain" | "mtls";

export type SecurityOptions = {
  /** How clients may authenticate; empty or absent: authentication off. */
  auth?: readonly AuthMethod[];
  /** Principals allowed everything. */
  superUsers?: readonly string[];
  /** Offer PLAIN on a plaintext listener too (the password crosses the network in clear). */
  plainOnPlaintext?: boolean;
  /** A connection not authenticated this long after opening is closed (default 10,000). */
  handshakeTimeoutMs?: number;
  /** Frames before authentication are at most this large (default 8,192). */
  authFrameBytesMax?: number;
  /** Requests a connection may make before authenticating (default 16). */
  authRequestsMax?: number;
  /** Unauthenticated connections per remote address; 0 (the default) is no limit. */
  unauthenticatedPerAddressMax?: number;
};

export const HANDSHAKE_TIMEOUT_MS_DEFAULT = 10_000;
export const AUTH_FRAME_BYTES_MAX_DEFAULT = 8_192;
export const AUTH_REQUESTS_MAX_DEFAULT = 16;
/** Failed logins logged per second at most; the rest are counted and summed in the next line. */
const FAILED_LOGIN_LOGS_PER_SECOND = 10;

export const API_NAMES = Object.fromEntries(
  Object.entries(API).map(([name, key]) => [key, name as keyof typeof API]),
) as Record<number, keyof typeof API>;

type Session = {
  principal: string | undefined;
  openedMs: number;
  requests: number;
  mechanism: SaslMechanism | undefined;
  scram: ScramServerExchange | undefined;
  cache: DecisionCache;
  /** Who is asking, made once at authentication: the data path's check allocates nothing. */
  who: { authorizer: Authorizer; principal: string } | undefined;
  counted: boolean;
};

const OPEN_APIS: ReadonlySet<number> = new Set([
  API.Handshake,
  API.SaslHandshake,
  API.SaslAuthenticate,
]);

export class SecurityGate {
  readonly methods: ReadonlySet<AuthMethod>;
  readonly authorizer: Authorizer;
  readonly handshakeTimeoutMs: number;
  readonly authFrameBytesMax: number;
  readonly authRequestsMax: number;
  readonly dataDir: string;
  state: SecurityState;
  #options: SecurityOptions;
  #sessions = new WeakMap<ServerConnection, Session>();
  #unauthenticatedByAddress = new Map<string, number>();
  #log: (message: string) => void;
  #failedLogins = { windowMs: 0, logged: 0, suppressed: 0 };

  constructor(options: SecurityOptions, dataDir: string, log: (message: string) => void) {
    this.methods = new Set(options.auth ?? []);
    this.#options = options;
    this.dataDir = dataDir;
    this.#log = log;
    this.handshakeTimeoutMs = positive(options.handshakeTimeoutMs, HANDSHAKE_TIMEOUT_MS_DEFAULT);
    this.authFrameBytesMax = positive(options.authFrameBytesMax, AUTH_FRAME_BYTES_MAX_DEFAULT);
    this.authRequestsMax = positive(options.authRequestsMax, AUTH_REQUESTS_MAX_DEFAULT);
    this.state = loadSecurityState(dataDir);
    this.authorizer = new Authorizer(this.state.acls, options.superUsers ?? []);
  }

  /** Whether `options` turns authentication on. */
  static enabled(options: SecurityOptions | undefined): boolean {
    return (options?.auth?.length ?? 0) > 0;
  }

  /** A new connection: false when it must be refused (unauthenticated per address). */
  opened(connection: ServerConnection, nowMs: number): boolean {
    if (!this.countUnauthenticated(connection.socket.remoteAddress)) return false;
    this.#sessions.set(connection, {
      principal: undefined,
      openedMs: nowMs,
      requests: 0,
      mechanism: undefined,
      scram: undefined,
      cache: new DecisionCache(),
      who: undefined,
      counted: true,
    });
    return true;
  }

  closed(connection: ServerConnection): void {
    const session = this.#sessions.get(connection);
    if (session !== undefined) this.#uncount(connection, session);
  }

  #uncount(connection: ServerConnection, session: Session): void {
    if (!session.counted) return;
    session.counted = false;
    this.uncountUnauthenticated(connection.socket.remoteAddress);
  }

  /**
   * One more connection from `address` that has not authenticated (on either listener): false,
   * and a log line, when `unauthenticatedPerAddressMax` of them are open already.
   */
  countUnauthenticated(address: string): boolean {
    const max = this.#options.unauthenticatedPerAddressMax ?? 0;
    const count = this.#unauthenticatedByAddress.get(address) ?? 0;
    if (max > 0 && count >= max) {
      this.#log(`refusing connection from ${address}: ${count} unauthenticated already`);
      return false;
    }
    this.#unauthenticatedByAddress.set(address, count + 1);
    return true;
  }

  /** A connection counted by countUnauthenticated authenticated or closed. */
  uncountUnauthenticated(address: string): void {
    const count = (this.#unauthenticatedByAddress.get(address) ?? 1) - 1;
    if (count <= 0) this.#unauthenticatedByAddress.delete(address);
    else this.#unauthenticatedByAddress.set(address, count);
  }

  #session(connection: ServerConnection): Session {
    const session = this.#sessions.get(connection);
    if (session === undefined) throw new ProtocolError("AUTHENTICATION_REQUIRED", "no session");
    return session;
  }

  principalOf(connection: ServerConnection): string | undefined {
    return this.#sessions.get(connection)?.principal;
  }

  /** The frame limit once Handshake is answered: the full one only for an authenticated peer. */
  frameBytesAfterHandshake(connection: ServerConnection, frameBytesMax: number): number {
    this.#mtls(connection);
    return this.principalOf(connection) === undefined ? this.authFrameBytesMax : frameBytesMax;
  }

  /** With "mtls", a verified client certificate authenticates the connection by itself. */
  #mtls(connection: ServerConnection): void {
    const session = this.#sessions.get(connection);
    if (session === undefined || session.principal !== undefined) return;
    if (!this.methods.has("mtls")) return;
    const principal = tlsPeerOf(connection.socket)?.principal;
    if (principal !== undefined) this.#authenticated(connection, session, principal);
  }

  #authenticated(connection: ServerConnection, session: Session, principal: string): void {
    session.principal = principal;
    session.who = { authorizer: this.authorizer, principal };
    session.scram = undefined;
    this.#uncount(connection, session);
  }

  /** Why the sweep should close `connection`: not authenticated within handshakeTimeoutMs. */
  timedOut(connection: ServerConnection, nowMs: number): string | undefined {
    const session = this.#sessions.get(connection);
    if (session === undefined || session.principal !== undefined) return undefined;
    if (nowMs - session.openedMs <= this.handshakeTimeoutMs) return undefined;
    return `not authenticated within handshakeTimeoutMs ${this.handshakeTimeoutMs}`;
  }

  /**
   * The pre-authentication gate, before anything reads the body: an unauthenticated connection
   * may only make the handshake and SASL requests, and only authRequestsMax of them.
   */
  admit(request: RequestContext): void {
    const session = this.#session(request.connection);
    if (session.principal !== undefined) return;
    this.#mtls(request.connection);
    if (session.principal !== undefined) return;
    session.requests++;
    if (OPEN_APIS.has(request.apiKey) && session.requests <= this.authRequestsMax) return;
    request.connection.closeAfterAnswers();
    const name = API_NAMES[request.apiKey] ?? `api ${request.apiKey}`;
    throw new ProtocolError(
      "AUTHENTICATION_REQUIRED",
      session.requests > this.authRequestsMax
        ? `${this.authRequestsMax} requests without authenticating (authRequestsMax)`
        : `${name} before authenticating: only Handshake and SASL are served`,
    );
  }

  /** The mechanisms this connection may use: PLAIN only over TLS unless allowed. */
  mechanisms(connection: ServerConnection): SaslMechanism[] {
    return this.offered(tlsPeerOf(connection.socket) !== undefined);
  }

  /** The mechanisms offered on an encrypted or a plaintext connection (either listener). */
  offered(encrypted: boolean): SaslMechanism[] {
    const list: SaslMechanism[] = [];
    if (this.methods.has("scram")) list.push("SCRAM-SHA-256", "SCRAM-SHA-512");
    if (this.methods.has("plain") && (encrypted || this.#options.plainOnPlaintext === true)) {
      list.push("PLAIN");
    }
    return list;
  }

  /** SaslHandshake: picks the mechanism; throws UNSUPPORTED_SASL_MECHANISM. */
  selectMechanism(connection: ServerConnection, mechanism: string): SaslMechanism[] {
    const session = this.#session(connection);
    const offered = this.mechanisms(connection);
    if (!offered.includes(mechanism as SaslMechanism)) {
      const plainHint =
        mechanism === "PLAIN" && this.methods.has("plain") ? " (PLAIN needs the TLS port)" : "";
      throw new ProtocolError(
        "UNSUPPORTED_SASL_MECHANISM",
        `mechanism ${mechanism.slice(0, 64)} is not offered${plainHint}; offered: ${offered}`,
      );
    }
    session.mechanism = mechanism as SaslMechanism;
    session.scram = isScramMechanism(mechanism) ? new ScramServerExchange(mechanism) : undefined;
    return offered;
  }

  /** One SaslAuthenticate step: the server's answer, or AUTHENTICATION_FAILED (then close). */
  authenticate(connection: ServerConnection, authBytes: Uint8Array): Uint8Array {
    const session = this.#session(connection);
    try {
      return new TextEncoder().encode(this.#step(connection, session, authBytes));
    } catch (error) {
      if (error instanceof ProtocolError && error.code === "AUTHENTICATION_REQUIRED") throw error;
      const user = session.scram?.username;
      this.#failedLogin(connection, user, (error as Error).message);
      connection.closeAfterAnswers();
      throw new ProtocolError("AUTHENTICATION_FAILED", "authentication failed");
    }
  }

  #step(connection: ServerConnection, session: Session, authBytes: Uint8Array): string {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(authBytes);
    if (session.mechanism === undefined) {
      throw new ProtocolError("AUTHENTICATION_REQUIRED", "SaslHandshake must come first");
    }
    if (session.principal !== undefined) throw new Error("already authenticated");
    if (session.mechanism === "PLAIN") {
      const principal = this.plainPrincipal(text);
      this.#authenticated(connection, session, principal);
      return "";
    }
    const scram = session.scram!;
    if (scram.username === undefined) {
      return scram.start(text, (name) => this.state.users.get(name)?.[scram.mechanism]);
    }
    const serverFinal = scram.finish(text);
    this.#authenticated(connection, session, scram.username);
    return serverFinal;
  }

  /** RFC 4616: authzid NUL authcid NUL password; authzid empty or the same user. */
  plainPrincipal(text: string): string {
    const parts = text.split("\u0000");
    if (parts.length !== 3) throw new Error("PLAIN message is not authzid NUL user NUL password");
    const [authzid, user, password] = parts as [string, string, string];
    if (authzid !== "" && authzid !== user) throw new Error("PLAIN authzid is another user");
    const credential = this.state.users.get(user)?.["SCRAM-SHA-256"];
    if (credential === undefined || !verifyPassword("SCRAM-SHA-256", credential, password)) {
      throw new Error(`unknown user or wrong password for ${user.slice(0, 64)}`);
    }
    return user;
  }

  #failedLogin(connection: ServerConnection, user: string | undefined, why: string): void {
    this.failedLogin(connection.socket.remoteAddress, user, why);
  }

  /** Logs a failed login with the remote address, at most 10 lines a second (either listener). */
  failedLogin(remoteAddress: string, user: string | undefined, why: string): void {
    const now = Date.now();
    const window = this.#failedLogins;
    if (now - window.windowMs >= 1000) {
      if (window.suppressed > 0) this.#log(`${window.suppressed} more failed logins not logged`);
      window.windowMs = now;
      window.logged = 0;
      window.suppressed = 0;
    }
    if (window.logged >= FAILED_LOGIN_LOGS_PER_SECOND) {
      window.suppressed++;
      return;
    }
    window.logged++;
    const who = user === undefined ? "" : ` as ${JSON.stringify(user.slice(0, 64))}`;
    this.#log(`failed login from ${remoteAddress}${who}: ${why}`);
  }

  /**
   * Checks a request against the ACLs; throws AUTHORIZATION_FAILED naming what is missing.
   * Returns null for a denied Produce with acks 0, which gets no answer (PROTOCOL.md section
   * 2): the refusal is logged instead, and the caller answers it with silence.
   */
  authorize(request: RequestContext): null | undefined {
    const name = API_NAMES[request.apiKey];
    if (name === undefined) return;
    const rule: AuthRule = AUTHORIZATION[name];
    const session = this.#session(request.connection);
    const principal = session.principal;
    const who = session.who;
    if (rule.kind === "open") return undefined;
    if (principal === undefined || who === undefined) {
      throw new ProtocolError("AUTHENTICATION_REQUIRED", name);
    }
    if (rule.kind === "binary") {
      const denied = session.cache.check(request.reader, rule.layout, rule, who);
      if (denied === undefined) return undefined;
      const error = refusal(denied.type, denied.name, denied.operation);
      if (rule.layout === "produce" && request.reader.remaining > 0) {
        // Produce's body starts with acks:i8.
        if (request.reader.bytes[request.reader.position] === 0) {
          this.#log(`acks=0 produce from ${principal} refused: ${error.message}`);
          return null;
        }
      }
      throw error;
    }
    if (rule.kind === "metadata") {
      for (const topic of metadataTopics(request.reader) ?? []) {
        if (!this.authorizer.allowed(principal, "topic", topic, "describe")) {
          throw refusal("topic", topic, "describe");
        }
      }
      return undefined;
    }
    for (const alternatives of requirementsOf(rule, request.reader)) {
      const allowed = alternatives.some((need) =>
        need.name === undefined
          ? this.authorizer.allowedOnAny(principal, need.type, need.operation)
          : this.authorizer.allowed(principal, need.type, need.name, need.operation),
      );
      const first = alternatives[0]!;
      if (!allowed) throw refusal(first.type, first.name ?? "*", first.operation);
    }
    return undefined;
  }

  /** Whether a full Metadata listing shows `topic` to this connection. */
  visibleTopic(connection: ServerConnection, topic: string): boolean {
    const principal = this.principalOf(connection);
    if (principal === undefined) return false;
    return this.authorizer.allowed(principal, "topic", topic, "describe");
  }

  /** The store changed (AlterSecurity): the ACLs in force follow, caches start over. */
  replaceState(state: SecurityState): void {
    this.state = state;
    this.authorizer.replace(state.acls);
  }
}

function refusal(type: ResourceType, name: string, operation: Operation): ProtocolError {
  return new ProtocolError(
    "AUTHORIZATION_FAILED",
    `not allowed to ${operation} ${type} ${JSON.stringify(name.slice(0, 255))}`,
  );
}

function positive(value: number | undefined, fallback: number): number {
  const resolved = value ?? fallback;
  if (!Number.isSafeInteger(resolved) || resolved < 1) {
    throw new RangeError(`security limit ${resolved} is not a positive integer`);
  }
  return resolved;
}
