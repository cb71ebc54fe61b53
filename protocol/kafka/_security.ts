// SASL on the Kafka listener, as Kafka's brokers do it (KIP-43, KIP-152): with authentication
// on, a connection must authenticate with SaslHandshake + SaslAuthenticate before any other
// API but ApiVersions, against the same users (SCRAM-SHA-256/512, PLAIN only on TLS unless
// allowed) and limits as sluice's own listener (server/_auth.ts, PROTOCOL.md section 13.6).
//
//   open ─► [ApiVersions] ─► SaslHandshake v1 ─► SaslAuthenticate ×1..2 ─► authenticated
//                          └► SaslHandshake v0 ─► bare token frames ×1..2 ─► authenticated
//   (or, with auth "mtls" on a TLS Kafka listener, a verified client certificate at once)
//
// Before authentication: frames are at most `authFrameBytesMax`, at most `authRequestsMax`
// requests are served, any other API closes the connection (Kafka closes it too: it has no
// error slot common to every answer), and `handshakeTimeoutMs` after opening it is closed. A
// failed login is answered SASL_AUTHENTICATION_FAILED (58), logged with the remote address,
// and the connection closed after the answer.

import { ProtocolError } from "../codec/errors.ts";
import type { SaslMechanism } from "../codec/sasl.ts";
import { isScramMechanism, ScramServerExchange } from "../codec/scram.ts";
import type { SecurityGate } from "../server/_auth.ts";
import type { Authorizer } from "../server/acl.ts";
import { KAFKA_ERRORS as E } from "./errors.ts";
import { API_KEYS as K } from "./messages.ts";
import type { Struct } from "./schema.ts";

/** One connection's authentication state. */
export type KafkaSession = {
  principal: string | undefined;
  openedMs: number;
  requests: number;
  mechanism: SaslMechanism | undefined;
  scram: ScramServerExchange | undefined;
  /** After SaslHandshake v0: the next frames are bare SASL tokens, not requests. */
  bareTokens: boolean;
  /** The remote address, counted among its unauthenticated connections until login or close. */
  address: string;
  counted: boolean;
};

/** What the listener's connection tells the gate about itself. */
export type SessionPeer = {
  readonly remoteAddress: string;
  /** Whether the connection is TLS, and the principal a verified client certificate names. */
  tls(): { principal: string | undefined } | undefined;
  /** Answer what is queued, then close (after a failed or refused handshake). */
  closeAfterAnswers(): void;
};

/** APIs served before authentication. */
const OPEN_APIS: ReadonlySet<number> = new Set([
  K.ApiVersions,
  K.SaslHandshake,
  K.SaslAuthenticate,
]);

/** Kafka's own wording for a failed login, whatever the cause (no user enumeration). */
const FAILED = "Authentication failed: invalid credentials with SASL mechanism";

export class KafkaSecurity {
  readonly gate: SecurityGate;

  constructor(gate: SecurityGate) {
    this.gate = gate;
  }

  get authorizer(): Authorizer {
    return this.gate.authorizer;
  }

  /** A new connection's session; undefined when `unauthenticatedPerAddressMax` refuses it. */
  open(nowMs: number, address: string): KafkaSession | undefined {
    if (!this.gate.countUnauthenticated(address)) return undefined;
    return {
      principal: undefined,
      openedMs: nowMs,
      requests: 0,
      mechanism: undefined,
      scram: undefined,
      bareTokens: false,
      address,
      counted: true,
    };
  }

  /** The connection closed: it no longer counts against its address. */
  closed(session: KafkaSession): void {
    if (!session.counted) return;
    session.counted = false;
    this.gate.uncountUnauthenticated(session.address);
  }

  #authenticated(session: KafkaSession, principal: string): void {
    session.principal = principal;
    session.scram = undefined;
    session.bareTokens = false;
    this.closed(session);
  }

  /**
   * With "mtls", a verified client certificate authenticates the connection by itself; true
   * when the connection is authenticated (now or before).
   */
  byCertificate(session: KafkaSession, peer: SessionPeer): boolean {
    if (session.principal !== undefined) return true;
    if (!this.gate.methods.has("mtls")) return false;
    const principal = peer.tls()?.principal;
    if (principal !== undefined) this.#authenticated(session, principal);
    return principal !== undefined;
  }

  /** Why the sweep should close this connection: not authenticated in handshakeTimeoutMs. */
  timedOut(session: KafkaSession, nowMs: number): string | undefined {
    if (session.principal !== undefined) return undefined;
    if (nowMs - session.openedMs <= this.gate.handshakeTimeoutMs) return undefined;
    return `not authenticated within handshakeTimeoutMs ${this.gate.handshakeTimeoutMs}`;
  }

  /** The pre-authentication gate: throws (and the listener closes) for anything not allowed. */
  admit(session: KafkaSession, peer: SessionPeer, apiKey: number, name: string): void {
    if (this.byCertificate(session, peer)) return;
    session.requests++;
    if (session.requests > this.gate.authRequestsMax) {
      throw new ProtocolError(
        "AUTHENTICATION_REQUIRED",
        `${this.gate.authRequestsMax} requests without authenticating (authRequestsMax)`,
      );
    }
    if (!OPEN_APIS.has(apiKey)) {
      throw new ProtocolError(
        "AUTHENTICATION_REQUIRED",
        `${name} before authenticating: only ApiVersions and SASL are served`,
      );
    }
  }

  /** SaslHandshake: picks the mechanism, or answers 33 (then closes) or 34. */
  handshake(session: KafkaSession, peer: SessionPeer, body: Struct, version: number): Struct {
    const offered = this.gate.offered(peer.tls() !== undefined);
    const mechanism = String(body["mechanism"]);
    if (session.principal !== undefined || session.mechanism !== undefined) {
      if (session.principal === undefined) peer.closeAfterAnswers();
      return { errorCode: E.ILLEGAL_SASL_STATE, mechanisms: offered };
    }
    if (!offered.includes(mechanism as SaslMechanism)) {
      this.gate.failedLogin(peer.remoteAddress, undefined, `mechanism ${mechanism.slice(0, 64)}`);
      peer.closeAfterAnswers();
      return { errorCode: E.UNSUPPORTED_SASL_MECHANISM, mechanisms: offered };
    }
    session.mechanism = mechanism as SaslMechanism;
    session.scram = isScramMechanism(mechanism) ? new ScramServerExchange(mechanism) : undefined;
    session.bareTokens = version === 0;
    return { errorCode: 0, mechanisms: offered };
  }

  /** SaslAuthenticate: one token in, one out; a failure is 58 and closes the connection. */
  authenticate(session: KafkaSession, peer: SessionPeer, authBytes: Uint8Array): Struct {
    const answer = (errorCode: number, errorMessage: string | null, bytes?: Uint8Array) => ({
      errorCode,
      errorMessage,
      authBytes: bytes ?? new Uint8Array(0),
      sessionLifetimeMs: 0,
    });
    if (session.principal !== undefined) {
      return answer(
        E.ILLEGAL_SASL_STATE,
        "already authenticated (re-authentication is not served)",
      );
    }
    if (session.mechanism === undefined || session.bareTokens) {
      peer.closeAfterAnswers();
      return answer(E.ILLEGAL_SASL_STATE, "SaslAuthenticate before a SaslHandshake v1");
    }
    const token = this.token(session, peer, authBytes);
    if (token === undefined) {
      return answer(E.SASL_AUTHENTICATION_FAILED, `${FAILED} ${session.mechanism}`);
    }
    return answer(0, null, token);
  }

  /**
   * One SASL token: the answer token, or undefined when the login failed (logged, and the
   * connection set to close after its answer).
   */
  token(session: KafkaSession, peer: SessionPeer, authBytes: Uint8Array): Uint8Array | undefined {
    try {
      return new TextEncoder().encode(this.#step(session, authBytes));
    } catch (error) {
      const user = session.scram?.username;
      this.gate.failedLogin(peer.remoteAddress, user, `kafka: ${(error as Error).message}`);
      session.scram = undefined;
      peer.closeAfterAnswers();
      return undefined;
    }
  }

  #step(session: KafkaSession, authBytes: Uint8Array): string {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(authBytes);
    if (session.mechanism === "PLAIN") {
      this.#authenticated(session, this.gate.plainPrincipal(text));
      return "";
    }
    const scram = session.scram;
    if (scram === undefined) throw new Error("the SCRAM exchange is over");
    if (scram.username === undefined) {
      return scram.start(text, (name) => this.gate.state.users.get(name)?.[scram.mechanism]);
    }
    const serverFinal = scram.finish(text);
    this.#authenticated(session, scram.username);
    return serverFinal;
  }
}
