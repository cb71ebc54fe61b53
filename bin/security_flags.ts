// The security flags of the `sluice` commands: TLS and SASL for every client command, and
// TLS, authentication and its limits for `serve` (PROTOCOL.md section 11).
//
//   client:  --tls-ca FILE [--tls-cert FILE --tls-key FILE] [--tls-servername NAME]
//            --user NAME, password from SLUICE_PASSWORD or --password-stdin,
//            [--sasl-mechanism SCRAM-SHA-256|SCRAM-SHA-512|PLAIN]
//   serve:   --tls-cert FILE --tls-key FILE [--tls-ca FILE] [--tls-port N] [--tls-principal dn]
//            --auth scram[,plain][,mtls] [--super-users A,B] [--allow-plain-without-tls]
//            [--handshake-timeout-ms N] [--unauthenticated-per-address-max N]

import fs from "node:fs";
import type { ClientConnectionOptions } from "../protocol/client/mod.ts";
import type { SaslMechanism } from "../protocol/codec/sasl.ts";
import type { AuthMethod, SecurityOptions, TlsServerOptions } from "../protocol/server/mod.ts";
import { type ParsedValues, UsageError } from "./_args.ts";

type OptionSpec = { type: "string" | "boolean"; help: string };

export const CLIENT_SECURITY_OPTIONS: Record<string, OptionSpec> = {
  "tls-ca": { type: "string", help: "Connect with TLS, trusting this PEM CA bundle" },
  "tls-cert": { type: "string", help: "Client certificate (PEM) for mutual TLS" },
  "tls-key": { type: "string", help: "Client private key (PEM) for mutual TLS" },
  "tls-servername": { type: "string", help: "Name the server certificate must carry" },
  user: { type: "string", help: "Authenticate as this user (password: SLUICE_PASSWORD)" },
  "password-stdin": { type: "boolean", help: "Read the password from the first stdin line" },
  "sasl-mechanism": {
    type: "string",
    help: "SCRAM-SHA-256 (default), SCRAM-SHA-512 or PLAIN",
  },
};

export const SERVE_SECURITY_OPTIONS: Record<string, OptionSpec> = {
  "tls-cert": { type: "string", help: "Server certificate chain (PEM): the listener is TLS" },
  "tls-key": { type: "string", help: "Server private key (PEM)" },
  "tls-ca": { type: "string", help: "Require client certificates signed by this CA (mTLS)" },
  "tls-port": { type: "string", help: "Keep --port plaintext; TLS on this port (0: free)" },
  "tls-principal": { type: "string", help: "cn (default) or dn: principal of a client cert" },
  auth: { type: "string", help: "Require authentication: scram, plain, mtls (comma list)" },
  "super-users": { type: "string", help: "Principals allowed everything (comma list)" },
  "allow-plain-without-tls": { type: "boolean", help: "Offer PLAIN on plaintext too (unsafe)" },
  "handshake-timeout-ms": { type: "string", help: "Close unauthenticated after (10000)" },
  "unauthenticated-per-address-max": {
    type: "string",
    help: "Unauthenticated connections per IP address (default: no limit)",
  },
};

function text(values: ParsedValues, name: string): string | undefined {
  const value = values[name];
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value.length === 0)
    throw new UsageError(`--${name} needs a value`);
  return value;
}

function readFile(values: ParsedValues, name: string): string | undefined {
  const path = text(values, name);
  if (path === undefined) return undefined;
  try {
    return fs.readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(`--${name} ${path}: ${(error as Error).message}`);
  }
}

function positiveInteger(values: ParsedValues, name: string, min = 1): number | undefined {
  const value = text(values, name);
  if (value === undefined) return undefined;
  const number = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(number) || number < min) {
    throw new UsageError(`--${name} ${value} is not an integer ≥ ${min}`);
  }
  return number;
}

/** One line of standard input, without its line ending. */
export function passwordFromStdin(): string {
  let input: string;
  try {
    input = fs.readFileSync(0, "utf8");
  } catch (error) {
    throw new UsageError(`--password-stdin: cannot read stdin (${(error as Error).message})`);
  }
  const line = input.split(/\r?\n/, 1)[0] ?? "";
  if (line.length === 0) throw new UsageError("--password-stdin: the first line is empty");
  return line;
}

/** The TLS and SASL options of a client command, for every connection it makes. */
export function clientSecurity(values: ParsedValues): ClientConnectionOptions {
  const ca = readFile(values, "tls-ca");
  const cert = readFile(values, "tls-cert");
  const key = readFile(values, "tls-key");
  const servername = text(values, "tls-servername");
  if ((cert === undefined) !== (key === undefined)) {
    throw new UsageError("--tls-cert and --tls-key go together");
  }
  const anyTls = [ca, cert, servername].some((value) => value !== undefined);
  const options: ClientConnectionOptions = anyTls
    ? {
        tls: {
          ...(ca === undefined ? {} : { ca }),
          ...(cert === undefined ? {} : { cert, key }),
          ...(servername === undefined ? {} : { servername }),
        },
      }
    : {};
  const user = text(values, "user");
  const mechanism = text(values, "sasl-mechanism");
  if (user === undefined) {
    if (mechanism !== undefined || values["password-stdin"] === true) {
      throw new UsageError("--sasl-mechanism and --password-stdin need --user");
    }
    return options;
  }
  if (mechanism !== undefined && !["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"].includes(mechanism)) {
    throw new UsageError(
      `--sasl-mechanism ${mechanism} is not SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN`,
    );
  }
  const password =
    values["password-stdin"] === true ? passwordFromStdin() : process.env["SLUICE_PASSWORD"];
  if (password === undefined) {
    throw new UsageError("--user needs a password: SLUICE_PASSWORD or --password-stdin");
  }
  return {
    ...options,
    sasl: {
      username: user,
      password,
      ...(mechanism === undefined ? {} : { mechanism: mechanism as SaslMechanism }),
    },
  };
}

/** `serve`'s TLS and security options, or `{}` when none is given. */
export function serveSecurity(values: ParsedValues): {
  tls?: TlsServerOptions & { port?: number };
  security?: SecurityOptions;
} {
  const certFile = text(values, "tls-cert");
  const keyFile = text(values, "tls-key");
  const caFile = text(values, "tls-ca");
  const tlsPort = text(values, "tls-port");
  const principal = text(values, "tls-principal");
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new UsageError("--tls-cert and --tls-key go together");
  }
  if (certFile === undefined && [caFile, tlsPort, principal].some((v) => v !== undefined)) {
    throw new UsageError("--tls-ca, --tls-port and --tls-principal need --tls-cert and --tls-key");
  }
  if (principal !== undefined && principal !== "cn" && principal !== "dn") {
    throw new UsageError(`--tls-principal ${principal} is not cn or dn`);
  }
  const port = tlsPort === undefined ? undefined : positiveInteger(values, "tls-port", 0);
  if (port !== undefined && port > 65_535) throw new UsageError(`--tls-port ${port} is not a port`);
  const result: ReturnType<typeof serveSecurity> = {};
  if (certFile !== undefined) {
    result.tls = {
      certFile,
      keyFile: keyFile!,
      ...(caFile === undefined ? {} : { caFile }),
      ...(principal === undefined ? {} : { principal: principal as "cn" | "dn" }),
      ...(port === undefined ? {} : { port }),
    };
  }
  const auth = text(values, "auth");
  if (auth === undefined) {
    const authOnly = [
      "super-users",
      "allow-plain-without-tls",
      "handshake-timeout-ms",
      "unauthenticated-per-address-max",
    ];
    const given = authOnly.find((name) => values[name] !== undefined);
    if (given !== undefined) throw new UsageError(`--${given} needs --auth`);
    return result;
  }
  const methods = auth.split(",").map((method) => method.trim());
  for (const method of methods) {
    if (!["scram", "plain", "mtls"].includes(method)) {
      throw new UsageError(`--auth ${method} is not scram, plain or mtls`);
    }
  }
  if (methods.includes("mtls") && caFile === undefined) {
    throw new UsageError("--auth mtls needs --tls-ca (client certificates)");
  }
  const superUsers = text(values, "super-users");
  const timeout = positiveInteger(values, "handshake-timeout-ms");
  const perAddress = positiveInteger(values, "unauthenticated-per-address-max");
  result.security = {
    auth: methods as AuthMethod[],
    ...(superUsers === undefined ? {} : { superUsers: superUsers.split(",").filter(Boolean) }),
    ...(values["allow-plain-without-tls"] === true ? { plainOnPlaintext: true } : {}),
    ...(timeout === undefined ? {} : { handshakeTimeoutMs: timeout }),
    ...(perAddress === undefined ? {} : { unauthenticatedPerAddressMax: perAddress }),
  };
  return result;
}
