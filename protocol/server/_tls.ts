// TLS on a sluice listener, with each runtime's own TLS: `Bun.listen({ tls })` on Bun,
// `node:tls` on Deno. TLS 1.2 is the oldest version either accepts. With a CA bundle the
// listener asks every client for a certificate signed by it (mutual TLS) and refuses a client
// without one; the certificate's subject then names the connection's principal: its CN, or its
// whole DN (`CN=alice,O=acme,C=NZ`, most specific first, as RFC 4514 writes it).
//
// What a connection's TLS session says is kept beside its socket (tlsPeerOf), for the
// authentication gate (_auth.ts): whether the connection is encrypted (PLAIN needs it), and
// the principal a verified client certificate names.

import { constants } from "node:crypto";
import fs from "node:fs";
import type { TransportSocket } from "../codec/outbox.ts";

export type TlsPrincipalMapping = "cn" | "dn";

export type TlsServerOptions = {
  /** PEM certificate chain and private key, or the files that hold them. */
  certFile: string;
  keyFile: string;
  /** PEM CA bundle: when given, clients must present a certificate it signed (mTLS). */
  caFile?: string;
  /** How a client certificate names the principal (default "cn"). */
  principal?: TlsPrincipalMapping;
};

export type TlsPeer = {
  /** The principal a verified client certificate names, if there was one. */
  principal: string | undefined;
};

/** What a listener needs to speak TLS and report each client's certificate. */
export type TlsListen = {
  cert: string;
  key: string;
  ca: string | undefined;
  principal: TlsPrincipalMapping;
  handshake(socket: TransportSocket, raw: unknown, success: boolean, error: Error | null): void;
  failed(remoteAddress: string, error: Error): void;
};

const peers = new WeakMap<TransportSocket, TlsPeer>();

/** The TLS session of a connection, or undefined for a plaintext one. */
export function tlsPeerOf(socket: TransportSocket): TlsPeer | undefined {
  return peers.get(socket);
}

function readPem(path: string, what: string): string {
  try {
    return fs.readFileSync(path, "utf8");
  } catch (error) {
    throw new TypeError(`cannot read the TLS ${what} ${path}: ${(error as Error).message}`);
  }
}

type PeerCertificate = { subject?: Record<string, string | string[]> } | null | undefined;

/** The subject of a peer certificate as a principal: its CN, or its DN. */
export function principalOfSubject(
  subject: Record<string, string | string[]> | undefined,
  mapping: TlsPrincipalMapping,
): string | undefined {
  if (subject === undefined) return undefined;
  const value = (item: string | string[]) => (Array.isArray(item) ? item.join("+") : item);
  if (mapping === "cn") return subject["CN"] === undefined ? undefined : value(subject["CN"]);
  const escaped = (text: string) => text.replace(/([,+"\\<>;=])/g, "\\$1");
  const parts = Object.entries(subject).map(([key, item]) => `${key}=${escaped(value(item))}`);
  return parts.length === 0 ? undefined : parts.reverse().join(",");
}

export function tlsListen(options: TlsServerOptions, log: (message: string) => void): TlsListen {
  const mapping = options.principal ?? "cn";
  if (mapping !== "cn" && mapping !== "dn") {
    throw new TypeError(`tls principal ${String(mapping)} must be "cn" or "dn"`);
  }
  return {
    cert: readPem(options.certFile, "certificate"),
    key: readPem(options.keyFile, "key"),
    ca: options.caFile === undefined ? undefined : readPem(options.caFile, "CA bundle"),
    principal: mapping,
    handshake(socket, raw, success, error) {
      // Without a CA, `error` only says the client sent no certificate, which is expected.
      const mutual = this.ca !== undefined;
      if (!success || (mutual && error !== null)) {
        const why = error?.message ?? "no client certificate";
        log(`TLS handshake from ${socket.remoteAddress} refused: ${why}`);
        socket.destroy();
        return;
      }
      const certificate = mutual
        ? (raw as { getPeerCertificate?(): PeerCertificate }).getPeerCertificate?.()
        : undefined;
      peers.set(socket, { principal: principalOfSubject(certificate?.subject, mapping) });
    },
    failed(remoteAddress, error) {
      log(`TLS handshake from ${remoteAddress} failed: ${error.message}`);
    },
  };
}

/** `Bun.listen`'s `tls` option: TLS 1.0 and 1.1 switched off. */
export function tlsBunOptions(secure: TlsListen): Record<string, unknown> {
  return {
    cert: secure.cert,
    key: secure.key,
    ...(secure.ca === undefined ? {} : { ca: secure.ca, requestCert: true }),
    rejectUnauthorized: secure.ca !== undefined,
    secureOptions: constants.SSL_OP_NO_TLSv1 | constants.SSL_OP_NO_TLSv1_1,
  };
}

/** `tls.createServer`'s options. */
export function tlsNodeOptions(secure: TlsListen): Record<string, unknown> {
  return {
    cert: secure.cert,
    key: secure.key,
    minVersion: "TLSv1.2",
    ...(secure.ca === undefined ? {} : { ca: secure.ca, requestCert: true }),
    rejectUnauthorized: secure.ca !== undefined,
  };
}
