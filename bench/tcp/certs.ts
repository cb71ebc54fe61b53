// A throwaway CA and a server certificate for 127.0.0.1/localhost, made with the openssl
// command, for benchmarks over TLS (bench/tcp/security_ab.ts, the `sluice` driver's tls=true).

import { spawnSync } from "node:child_process";
import { join } from "node:path";

export type BenchCerts = { caFile: string; certFile: string; keyFile: string };

function openssl(dir: string, args: string[]): boolean {
  return spawnSync("openssl", args, { cwd: dir, encoding: "utf8" }).status === 0;
}

/** Writes ca.pem, server.pem and server.key into `dir`; undefined without openssl. */
export function makeBenchCerts(dir: string): BenchCerts | undefined {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  const made =
    openssl(
      dir,
      ["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2"].concat([
        "-subj",
        "/CN=bench CA",
      ]),
    ) &&
    openssl(
      dir,
      ["req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj"].concat([
        "/CN=localhost",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
      ]),
    ) &&
    openssl(
      dir,
      ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key"].concat([
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-copy_extensions",
        "copy",
      ]),
    );
  if (!made) return undefined;
  return {
    caFile: join(dir, "ca.pem"),
    certFile: join(dir, "server.pem"),
    keyFile: join(dir, "server.key"),
  };
}
