// Throwaway certificates for the TLS tests, made with the openssl command in a temp directory:
// a CA, a server certificate for localhost/127.0.0.1, a client certificate (CN=alice, O=acme,
// C=NZ), a second CA nobody trusts with a server certificate of its own, and expired server and
// client certificates. Without openssl (`bash scripts/install_openssl.sh` installs it) the
// tests that need them are skipped with a message.

import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../../helpers.ts";

export type TestCerts = {
  dir: string;
  file(name: string): string;
  pem(name: string): string;
} & Disposable;

export function opensslMissing(): string | undefined {
  const probe = spawnSync("openssl", ["version"], { encoding: "utf8" });
  if (probe.status === 0) return undefined;
  return "openssl is not installed: run `bash scripts/install_openssl.sh` to run the TLS tests";
}

function openssl(dir: string, args: string[]): void {
  const run = spawnSync("openssl", args, { cwd: dir, encoding: "utf8", timeout: 30_000 });
  if (run.status !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${run.stderr}`);
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

function makeCa(dir: string, name: string): void {
  openssl(
    dir,
    ["req", "-x509", ...EC, "-keyout", `${name}.key`, "-out", `${name}.pem`].concat([
      "-days",
      "2",
      "-subj",
      `/CN=sluice test ${name}`,
    ]),
  );
}

function makeLeaf(dir: string, name: string, subject: string, ca: string, server: boolean): void {
  const extension = server
    ? ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    : ["-addext", "extendedKeyUsage=clientAuth"];
  openssl(
    dir,
    ["req", ...EC, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject].concat(
      extension,
    ),
  );
  openssl(
    dir,
    ["x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}.key`].concat([
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "2",
      "-copy_extensions",
      "copy",
    ]),
  );
}

/** A certificate that expired in 2020, through `openssl ca` (x509 cannot backdate). */
function makeExpired(dir: string, name: string, subject: string, server: boolean): void {
  const extension = server
    ? ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    : ["-addext", "extendedKeyUsage=clientAuth"];
  writeFileSync(join(dir, "index.txt"), "");
  writeFileSync(join(dir, "serial"), "1000\n");
  writeFileSync(
    join(dir, "ca.cnf"),
    [
      "[ca]",
      "default_ca = test",
      "[test]",
      "database = index.txt",
      "new_certs_dir = .",
      "serial = serial",
      "default_md = sha256",
      "policy = any",
      "copy_extensions = copy",
      "unique_subject = no",
      "[any]",
      "commonName = supplied",
      "",
    ].join("\n"),
  );
  openssl(
    dir,
    ["req", ...EC, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject].concat(
      extension,
    ),
  );
  openssl(
    dir,
    ["ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key"]
      .concat(["-in", `${name}.csr`, "-out", `${name}.pem`, "-notext"])
      .concat(["-startdate", "20200101000000Z", "-enddate", "20200102000000Z"]),
  );
}

export function makeTestCerts(): TestCerts {
  const temp = tempDir("sluice-certs-");
  const dir = temp.path;
  makeCa(dir, "ca");
  makeCa(dir, "other-ca");
  makeLeaf(dir, "server", "/CN=localhost", "ca", true);
  makeLeaf(dir, "alice", "/C=NZ/O=acme/CN=alice", "ca", false);
  makeLeaf(dir, "stranger", "/CN=stranger", "other-ca", false);
  makeLeaf(dir, "other-server", "/CN=localhost", "other-ca", true);
  makeExpired(dir, "expired-server", "/CN=localhost", true);
  makeExpired(dir, "expired-alice", "/CN=alice", false);
  return {
    dir,
    file: (name) => join(dir, name),
    pem: (name) => readFileSync(join(dir, name), "utf8"),
    [Symbol.dispose]: () => temp[Symbol.dispose](),
  };
}
