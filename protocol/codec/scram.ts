// SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), both sides, without channel binding.
// Shared by the server (which holds stored credentials, never passwords) and the client.
//
//   client                                         server
//   client-first  n,,n=USER,r=CNONCE          ──►  looks up USER's salt, iterations
//                 r=CNONCE+SNONCE,s=SALT,i=N  ◄──  server-first
//   client-final  c=biws,r=CNONCE+SNONCE,p=PROOF ─► checks PROOF against StoredKey
//                 v=SERVER_SIGNATURE          ◄──  server-final (or e=ERROR)
//
//   SaltedPassword  = PBKDF2-HMAC-H(password, salt, N)
//   ClientKey       = HMAC(SaltedPassword, "Client Key")   StoredKey = H(ClientKey)
//   ServerKey       = HMAC(SaltedPassword, "Server Key")
//   AuthMessage     = client-first-bare "," server-first "," client-final-without-proof
//   ClientProof     = ClientKey XOR HMAC(StoredKey, AuthMessage)
//   ServerSignature = HMAC(ServerKey, AuthMessage)
//
// Nonces come from the CSPRNG (crypto.randomBytes); proofs and signatures are compared with
// crypto.timingSafeEqual. Passwords are normalized with NFKC, the core of SASLprep (RFC 4013);
// the prohibited-character tables of SASLprep are not applied.

import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";

export type ScramMechanism = "SCRAM-SHA-256" | "SCRAM-SHA-512";
export const SCRAM_MECHANISMS: readonly ScramMechanism[] = ["SCRAM-SHA-256", "SCRAM-SHA-512"];

/** RFC 7677's minimum; also the default for stored credentials. */
export const SCRAM_ITERATIONS_DEFAULT = 4096;
/** A client refuses a server asking for more: a hostile server could make it spin for minutes. */
export const SCRAM_ITERATIONS_MAX = 1_000_000;
export const SCRAM_SALT_BYTES = 16;
const NONCE_BYTES = 24;
/** A SCRAM message longer than this is refused before it is parsed. */
export const SCRAM_MESSAGE_BYTES_MAX = 4096;

/** What the server stores per user and mechanism: enough to verify, never the password. */
export type ScramCredential = {
  salt: string; // base64
  iterations: number;
  storedKey: string; // base64
  serverKey: string; // base64
};

/** A SCRAM exchange that cannot go on: malformed, wrong nonce, wrong proof or signature. */
export class ScramError extends Error {
  override name = "ScramError";
}

function hashOf(mechanism: ScramMechanism): { name: "sha256" | "sha512"; bytes: number } {
  return mechanism === "SCRAM-SHA-256"
    ? { name: "sha256", bytes: 32 }
    : { name: "sha512", bytes: 64 };
}

export function isScramMechanism(value: string): value is ScramMechanism {
  return value === "SCRAM-SHA-256" || value === "SCRAM-SHA-512";
}

function hmac(mechanism: ScramMechanism, key: Uint8Array, text: string | Uint8Array): Buffer {
  return createHmac(hashOf(mechanism).name, key).update(text).digest();
}

function hash(mechanism: ScramMechanism, bytes: Uint8Array): Buffer {
  return createHash(hashOf(mechanism).name).update(bytes).digest();
}

export function saltedPassword(
  mechanism: ScramMechanism,
  password: string,
  salt: Uint8Array,
  iterations: number,
): Buffer {
  const { name, bytes } = hashOf(mechanism);
  return pbkdf2Sync(password.normalize("NFKC"), salt, iterations, bytes, name);
}

/** A stored credential for `password`: a fresh random salt unless one is given. */
export function makeScramCredential(
  mechanism: ScramMechanism,
  password: string,
  options: { iterations?: number; salt?: Uint8Array } = {},
): ScramCredential {
  const iterations = options.iterations ?? SCRAM_ITERATIONS_DEFAULT;
  if (!Number.isSafeInteger(iterations) || iterations < SCRAM_ITERATIONS_DEFAULT) {
    throw new RangeError(`iterations ${iterations} is below ${SCRAM_ITERATIONS_DEFAULT}`);
  }
  const salt = options.salt ?? randomBytes(SCRAM_SALT_BYTES);
  const salted = saltedPassword(mechanism, password, salt, iterations);
  return {
    salt: Buffer.from(salt).toString("base64"),
    iterations,
    storedKey: hash(mechanism, hmac(mechanism, salted, "Client Key")).toString("base64"),
    serverKey: hmac(mechanism, salted, "Server Key").toString("base64"),
  };
}

/** Whether `password` is the one `credential` was made from (PLAIN), in constant time. */
export function verifyPassword(
  mechanism: ScramMechanism,
  credential: ScramCredential,
  password: string,
): boolean {
  const salted = saltedPassword(
    mechanism,
    password,
    Buffer.from(credential.salt, "base64"),
    credential.iterations,
  );
  const storedKey = hash(mechanism, hmac(mechanism, salted, "Client Key"));
  return constantTimeEqual(storedKey, Buffer.from(credential.storedKey, "base64"));
}

export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

export function newNonce(): string {
  return randomBytes(NONCE_BYTES).toString("base64");
}

/** `=` and `,` in a SCRAM username are escaped as `=3D` and `=2C` (RFC 5802 §5.1). */
export function escapeUsername(name: string): string {
  return name.replaceAll("=", "=3D").replaceAll(",", "=2C");
}

function unescapeUsername(text: string): string {
  if (/=(?!3D|2C)/.test(text)) throw new ScramError(`username ${text} has a bad escape`);
  return text.replaceAll("=2C", ",").replaceAll("=3D", "=");
}

/** `k=v,k=v,...` into a map, every attribute a single letter, none repeated. */
function attributes(message: string, what: string): Map<string, string> {
  if (message.length > SCRAM_MESSAGE_BYTES_MAX) {
    throw new ScramError(`${what} of ${message.length} characters is too long`);
  }
  const result = new Map<string, string>();
  for (const part of message.split(",")) {
    if (part.length < 2 || part[1] !== "=" || !/^[a-zA-Z]$/.test(part[0]!)) {
      throw new ScramError(`${what} has a malformed attribute '${part.slice(0, 40)}'`);
    }
    if (result.has(part[0]!)) throw new ScramError(`${what} repeats attribute ${part[0]}`);
    result.set(part[0]!, part.slice(2));
  }
  return result;
}

function required(fields: Map<string, string>, key: string, what: string): string {
  const value = fields.get(key);
  if (value === undefined || value.length === 0) {
    throw new ScramError(`${what} lacks attribute ${key}`);
  }
  return value;
}

function base64Bytes(text: string, what: string): Buffer {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new ScramError(`${what} is not base64`);
  }
  return Buffer.from(text, "base64");
}

const GS2_HEADER = "n,,";
const CHANNEL_BINDING = Buffer.from(GS2_HEADER).toString("base64"); // "biws"

export type ClientFirst = { username: string; clientNonce: string; bare: string };

/** Parses a client-first message: `n,,n=USER,r=NONCE` (no channel binding, no authzid). */
export function parseClientFirst(message: string): ClientFirst {
  if (!message.startsWith(GS2_HEADER)) {
    throw new ScramError("client-first must start with 'n,,' (no channel binding, no authzid)");
  }
  const bare = message.slice(GS2_HEADER.length);
  const fields = attributes(bare, "client-first");
  if ([...fields.keys()].slice(0, 2).join("") !== "nr") {
    throw new ScramError("client-first must be n=USER,r=NONCE, in that order");
  }
  const username = unescapeUsername(required(fields, "n", "client-first"));
  const clientNonce = required(fields, "r", "client-first");
  if (!/^[\x21-\x2b\x2d-\x7e]+$/.test(clientNonce)) {
    throw new ScramError("client-first nonce has characters outside printable ASCII");
  }
  return { username, clientNonce, bare };
}

/**
 * The server side of one exchange. `start` answers the client-first message; `finish` checks
 * the client-final one and returns the server-final message; each may be called once, in
 * order. An unknown user gets a made-up salt and fails at `finish`, like a wrong password, so
 * that the exchange does not tell which usernames exist.
 */
export class ScramServerExchange {
  readonly mechanism: ScramMechanism;
  #credential: ScramCredential | undefined;
  #first: ClientFirst | undefined;
  #serverFirst = "";
  #nonce = "";
  #state: "new" | "started" | "done" = "new";

  constructor(mechanism: ScramMechanism) {
    this.mechanism = mechanism;
  }

  get username(): string | undefined {
    return this.#first?.username;
  }

  start(clientFirst: string, lookup: (username: string) => ScramCredential | undefined): string {
    if (this.#state !== "new") throw new ScramError("client-first sent twice");
    this.#state = "started";
    this.#first = parseClientFirst(clientFirst);
    this.#credential = lookup(this.#first.username);
    const salt = this.#credential?.salt ?? madeUpSalt(this.#first.username);
    const iterations = this.#credential?.iterations ?? SCRAM_ITERATIONS_DEFAULT;
    this.#nonce = this.#first.clientNonce + newNonce();
    this.#serverFirst = `r=${this.#nonce},s=${salt},i=${iterations}`;
    return this.#serverFirst;
  }

  /** Returns the server-final message; throws ScramError for a failed or malformed proof. */
  finish(clientFinal: string): string {
    if (this.#state !== "started") throw new ScramError("client-final out of order");
    this.#state = "done";
    const proofAt = clientFinal.lastIndexOf(",p=");
    if (proofAt < 0) throw new ScramError("client-final lacks the proof (p=)");
    const withoutProof = clientFinal.slice(0, proofAt);
    const fields = attributes(clientFinal, "client-final");
    if (required(fields, "c", "client-final") !== CHANNEL_BINDING) {
      throw new ScramError("client-final channel binding is not 'biws'");
    }
    // librdkafka (kcat, confluent-kafka) sends its own nonce again in front of the whole
    // nonce (`r=<client nonce><client nonce><server part>`); Kafka's broker accepts a nonce
    // that ends with its own, so this accepts exactly that form too. Either way the server's
    // fresh random part must come back, which is what makes a replayed exchange fail.
    const nonce = required(fields, "r", "client-final");
    const expected =
      nonce.length === this.#nonce.length ? this.#nonce : this.#first!.clientNonce + this.#nonce;
    if (!constantTimeEqual(Buffer.from(nonce), Buffer.from(expected))) {
      throw new ScramError("client-final nonce is not the exchange's nonce");
    }
    const proof = base64Bytes(required(fields, "p", "client-final"), "client proof");
    const credential = this.#credential;
    const authMessage = `${this.#first!.bare},${this.#serverFirst},${withoutProof}`;
    if (credential === undefined) throw new ScramError("unknown user or wrong password");
    const storedKey = Buffer.from(credential.storedKey, "base64");
    const signature = hmac(this.mechanism, storedKey, authMessage);
    if (proof.length !== signature.length) throw new ScramError("client proof has the wrong size");
    const clientKey = xor(proof, signature);
    if (!constantTimeEqual(hash(this.mechanism, clientKey), storedKey)) {
      throw new ScramError("unknown user or wrong password");
    }
    const serverKey = Buffer.from(credential.serverKey, "base64");
    return `v=${hmac(this.mechanism, serverKey, authMessage).toString("base64")}`;
  }
}

/**
 * The salt answered for a user that does not exist: the same for the same name for the life
 * of the process (a random one per attempt would tell a prober the user is missing, since a
 * real user's salt never changes), and unrelated to any real salt.
 */
const MADE_UP_SALT_KEY = randomBytes(32);

function madeUpSalt(username: string): string {
  const digest = createHmac("sha256", MADE_UP_SALT_KEY).update(username).digest();
  return digest.subarray(0, SCRAM_SALT_BYTES).toString("base64");
}

function xor(a: Uint8Array, b: Uint8Array): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** The client side of one exchange: `first`, then `final(serverFirst)`, then `verify`. */
export class ScramClientExchange {
  readonly mechanism: ScramMechanism;
  #username: string;
  #password: string;
  #clientNonce: string;
  #bare = "";
  #expectedSignature: Buffer | undefined;

  constructor(
    mechanism: ScramMechanism,
    credentials: { username: string; password: string },
    clientNonce = newNonce(),
  ) {
    this.mechanism = mechanism;
    this.#username = credentials.username;
    this.#password = credentials.password;
    this.#clientNonce = clientNonce;
  }

  first(): string {
    this.#bare = `n=${escapeUsername(this.#username)},r=${this.#clientNonce}`;
    return GS2_HEADER + this.#bare;
  }

  /** The client-final message for the server-first one; checks the nonce and iterations. */
  final(serverFirst: string): string {
    const fields = attributes(serverFirst, "server-first");
    const nonce = required(fields, "r", "server-first");
    if (!nonce.startsWith(this.#clientNonce) || nonce.length === this.#clientNonce.length) {
      throw new ScramError("server-first nonce does not extend the client's nonce");
    }
    const salt = base64Bytes(required(fields, "s", "server-first"), "salt");
    const iterations = Number(required(fields, "i", "server-first"));
    if (!Number.isSafeInteger(iterations) || iterations < 1 || iterations > SCRAM_ITERATIONS_MAX) {
      throw new ScramError(`server-first iteration count ${fields.get("i")} is out of range`);
    }
    const salted = saltedPassword(this.mechanism, this.#password, salt, iterations);
    const clientKey = hmac(this.mechanism, salted, "Client Key");
    const storedKey = hash(this.mechanism, clientKey);
    const withoutProof = `c=${CHANNEL_BINDING},r=${nonce}`;
    const authMessage = `${this.#bare},${serverFirst},${withoutProof}`;
    const proof = xor(clientKey, hmac(this.mechanism, storedKey, authMessage));
    const serverKey = hmac(this.mechanism, salted, "Server Key");
    this.#expectedSignature = hmac(this.mechanism, serverKey, authMessage);
    return `${withoutProof},p=${proof.toString("base64")}`;
  }

  /** Checks the server-final message: the server proved it knows the credential. */
  verify(serverFinal: string): void {
    const fields = attributes(serverFinal, "server-final");
    const error = fields.get("e");
    if (error !== undefined) throw new ScramError(`the server refused: ${error}`);
    const signature = base64Bytes(required(fields, "v", "server-final"), "server signature");
    const expected = this.#expectedSignature;
    if (expected === undefined) throw new ScramError("server-final before server-first");
    if (!constantTimeEqual(signature, expected)) {
      throw new ScramError("the server's signature is wrong: it does not know the credential");
    }
  }
}
