// The security APIs on the server (PROTOCOL.md section 11): SaslHandshake and SaslAuthenticate
// before authentication, AlterSecurity and DescribeSecurity (users and ACLs, online) after.
// A server lists and serves them only with authentication on.

import { errorToWire, WIRE_ERRORS } from "../codec/errors.ts";
import { API, finishFrame, startResponse } from "../codec/frames.ts";
import { type Fields, mapItem, readMsgpack, stringField, writeMsgpack } from "../codec/control.ts";
import {
  readSaslAuthenticate,
  readSaslHandshakeRequest,
  writeSaslAuthenticate,
  writeSaslHandshakeResponse,
} from "../codec/sasl.ts";
import { SluiceError } from "../../record/mod.ts";
import type { HandlerResult, RequestContext } from "./connection.ts";
import { checkAcl } from "./acl.ts";
import type { SecurityGate } from "./_auth.ts";
import {
  addAcl,
  checkCredentials,
  checkUserName,
  removeAcl,
  saveSecurityState,
  type SecurityState,
} from "./security_store.ts";

type Handler = (request: RequestContext) => HandlerResult | Promise<HandlerResult>;

function reply(correlationId: number, body: unknown): HandlerResult {
  const writer = startResponse(correlationId, 256);
  writeMsgpack(writer, body);
  return [finishFrame(writer)];
}

export function securityHandlers(gate: SecurityGate): [number, Handler][] {
  let tail: Promise<unknown> = Promise.resolve();
  return [
    [
      API.SaslHandshake,
      (request) => {
        const mechanism = readSaslHandshakeRequest(request.reader);
        const offered = gate.selectMechanism(request.connection, mechanism);
        const writer = startResponse(request.correlationId, 64);
        writeSaslHandshakeResponse(writer, offered);
        return [finishFrame(writer)];
      },
    ],
    [
      API.SaslAuthenticate,
      (request) => {
        const answer = gate.authenticate(request.connection, readSaslAuthenticate(request.reader));
        const writer = startResponse(request.correlationId, 16 + answer.length);
        writeSaslAuthenticate(writer, answer);
        // Authenticated: frames may now be as large as the server's full limit.
        const principal = gate.principalOf(request.connection);
        if (principal !== undefined) request.connection.completeHandshake();
        return [finishFrame(writer)];
      },
    ],
    [
      API.AlterSecurity,
      (request) => {
        const fields = readMsgpack(request.reader, "AlterSecurityRequest");
        // One change at a time: each reads the state the one before it wrote.
        const done = tail.then(() => alterSecurity(gate, fields));
        tail = done.catch(() => undefined);
        return done.then(
          (changed) => reply(request.correlationId, { errorCode: 0, errorMessage: null, changed }),
          (error: unknown) => {
            if (!(error instanceof SluiceError)) throw error;
            const { code, message } = errorToWire(error);
            return reply(request.correlationId, {
              errorCode: code,
              errorMessage: message,
              changed: 0,
            });
          },
        );
      },
    ],
    [API.DescribeSecurity, (request) => describeSecurity(gate, request)],
  ];
}

/** Applies one change to a copy of the state, saves it, then puts it in force. */
async function alterSecurity(gate: SecurityGate, fields: Fields): Promise<number> {
  const next: SecurityState = { users: new Map(gate.state.users), acls: [...gate.state.acls] };
  const action = stringField(fields, "action", 32);
  let changed = 0;
  if (action === "upsertUser") {
    const name = checkUserName(stringField(fields, "name", 1024));
    next.users.set(name, checkCredentials(mapItem(fields["credentials"], "credentials"), name));
    changed = 1;
  } else if (action === "deleteUser") {
    changed = next.users.delete(stringField(fields, "name", 1024)) ? 1 : 0;
  } else if (action === "addAcl") {
    changed = addAcl(next, checkAcl(fields["acl"])) ? 1 : 0;
  } else if (action === "removeAcl") {
    changed = removeAcl(next, checkAcl(fields["acl"]));
  } else {
    throw new SluiceError("INVALID_CONFIG", `action ${action} is not known`, { action });
  }
  if (changed > 0) {
    saveSecurityState(gate.dataDir, next);
    gate.replaceState(next);
  }
  return changed;
}

function describeSecurity(gate: SecurityGate, request: RequestContext): HandlerResult {
  const fields = readMsgpack(request.reader, "DescribeSecurityRequest");
  const what = stringField(fields, "what", 16);
  const users =
    what === "users"
      ? [...gate.state.users].map(([name, credentials]) => ({
          name,
          mechanisms: Object.keys(credentials).sort(),
        }))
      : [];
  const acls = what === "acls" ? gate.state.acls : [];
  if (what !== "users" && what !== "acls") {
    const message = `what ${what} is not users or acls`;
    return reply(request.correlationId, {
      errorCode: WIRE_ERRORS.INVALID_CONFIG,
      errorMessage: message,
      users,
      acls,
    });
  }
  return reply(request.correlationId, { errorCode: 0, errorMessage: null, users, acls });
}
