// Shared by the security tests: a server with authentication on, users stored before it
// starts, and clients that authenticate (or not).

import { writeMsgpack, readMsgpack, type Fields } from "../../../protocol/codec/control.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { makeScramCredential } from "../../../protocol/codec/scram.ts";
import { ClientConnection, type ClientConnectionOptions } from "../../../protocol/client/mod.ts";
import type { ServerOptions } from "../../../protocol/server/mod.ts";
import type { Acl } from "../../../protocol/server/acl.ts";
import {
  emptySecurityState,
  saveSecurityState,
  type UserCredentials,
} from "../../../protocol/server/security_store.ts";
import type { SecurityOptions } from "../../../protocol/server/_auth.ts";
import { startTestServer, type TestServer } from "../server/serving.ts";
import { tempDir } from "../../helpers.ts";
import { SluiceServer } from "../../../protocol/server/mod.ts";

export const PASSWORD = "correct horse";

export function credentialsFor(password: string): UserCredentials {
  return {
    "SCRAM-SHA-256": makeScramCredential("SCRAM-SHA-256", password),
    "SCRAM-SHA-512": makeScramCredential("SCRAM-SHA-512", password),
  };
}

/** A server with `security`, whose store holds `users` (all with PASSWORD) and `acls`. */
export async function startSecureServer(
  users: string[],
  options: { security?: SecurityOptions; acls?: Acl[] } & Omit<ServerOptions, "security"> = {},
): Promise<TestServer> {
  const dir = tempDir();
  const state = emptySecurityState();
  const credentials = credentialsFor(PASSWORD);
  for (const user of users) state.users.set(user, credentials);
  state.acls = options.acls ?? [];
  saveSecurityState(dir.path, state);
  const logs: string[] = [];
  const server = await SluiceServer.start({
    log: (message) => logs.push(message),
    engineOptions: { onWarning: () => {} },
    ...options,
    security: options.security ?? { auth: ["scram", "plain"], superUsers: ["admin"] },
    dataDir: dir.path,
    port: 0,
  });
  return {
    server,
    port: server.port,
    logs,
    dataDir: dir.path,
    async [Symbol.asyncDispose]() {
      try {
        await server.close();
      } finally {
        dir[Symbol.dispose]();
      }
    },
  };
}

/** A connection authenticated as `user` (or not at all), closed on dispose. */
export async function clientAs(
  port: number,
  user: string | undefined,
  options: ClientConnectionOptions = {},
): Promise<ClientConnection & AsyncDisposable> {
  const connection = await ClientConnection.connect("127.0.0.1", port, {
    ...(user === undefined ? {} : { sasl: { username: user, password: PASSWORD } }),
    ...options,
  });
  return Object.assign(connection, {
    [Symbol.asyncDispose]: () => connection.close(),
  });
}

/** A msgpack control request; resolves with the decoded body (request-level errors reject). */
export async function control(
  connection: ClientConnection,
  apiKey: number,
  body: Fields,
): Promise<Fields> {
  const reader = await connection.request(apiKey, (writer) => writeMsgpack(writer, body));
  return readMsgpack(reader, "response");
}

export async function alterAcl(admin: ClientConnection, action: string, acl: Acl) {
  const fields = await control(admin, API.AlterSecurity, { action, acl });
  if (fields["errorCode"] !== 0) throw new Error(String(fields["errorMessage"]));
}

export { startTestServer };
