// `sluice users add|delete|list` and `sluice acls add|remove|list`: the users (salted, hashed
// SCRAM credentials) and ACLs of a data directory, changed offline on a directory no broker
// holds (`--data DIR`) or online through a running broker (`--broker HOST:PORT`, as a user
// allowed alter/describe on the cluster).
//
//   sluice users add alice --password-stdin --data ./data
//   SLUICE_PASSWORD=... sluice users add bob --password-stdin --broker h:7450 --user admin
//   sluice acls add --principal alice --allow read,write,describe --topic orders --data ./data
//   sluice acls add --principal alice --allow read --topic logs- --prefixed --broker h:7450 ...

import { writeMsgpack, readMsgpack, type Fields } from "../protocol/codec/control.ts";
import { API } from "../protocol/codec/frames.ts";
import { makeScramCredential, SCRAM_ITERATIONS_DEFAULT } from "../protocol/codec/scram.ts";
import { ClientConnection } from "../protocol/client/mod.ts";
import {
  type Acl,
  addAcl,
  checkAcl,
  checkUserName,
  dataDirHolder,
  loadSecurityState,
  removeAcl,
  type SecurityState,
  saveSecurityState,
  type UserCredentials,
} from "../protocol/server/mod.ts";
import { SluiceError } from "../record/mod.ts";
import {
  formatTable,
  integerValue,
  parseBroker,
  positionalsFor,
  talkingTo,
} from "./broker_client.ts";
import { type ParsedValues, UsageError } from "./_args.ts";
import { clientSecurity, passwordFromStdin } from "./security_flags.ts";

type Place = { kind: "data"; dir: string } | { kind: "broker"; values: ParsedValues };

function placeOf(values: ParsedValues): Place {
  const dir = values["data"];
  if (dir !== undefined && values["broker"] !== undefined) {
    throw new UsageError("give --data (offline) or --broker (online), not both");
  }
  if (typeof dir === "string" && dir.length > 0) return { kind: "data", dir };
  if (dir !== undefined) throw new UsageError("--data needs a directory");
  return { kind: "broker", values };
}

/** Applies `change` to the store of a directory no running broker holds. */
function changeOffline(dir: string, change: (state: SecurityState) => number): number {
  const holder = dataDirHolder(dir);
  if (holder !== undefined) {
    throw new Error(
      `data directory ${dir} is held by a running broker (pid ${holder}): ` +
        "change it online with --broker, or stop the broker first",
    );
  }
  const state = loadSecurityState(dir);
  const changed = change(state);
  if (changed > 0) saveSecurityState(dir, state);
  return changed;
}

/** One security request to a broker, as the user its flags name. */
async function online(values: ParsedValues, apiKey: number, body: Fields): Promise<Fields> {
  // For `users add`, --password-stdin is the new user's password: the caller's own comes from
  // SLUICE_PASSWORD.
  const { ["password-stdin"]: _newUserPassword, ...callerValues } = values;
  const broker = parseBroker(values["broker"]);
  return talkingTo(broker, async () => {
    const connection = await ClientConnection.connect(
      broker.host,
      broker.port,
      clientSecurity(callerValues),
    );
    try {
      const reader = await connection.request(apiKey, (writer) => writeMsgpack(writer, body));
      const fields = readMsgpack(reader, "response");
      if (fields["errorCode"] !== 0) {
        throw new Error(`${String(fields["errorMessage"])} (error code ${fields["errorCode"]})`);
      }
      return fields;
    } finally {
      await connection.close();
    }
  });
}

export async function users(values: ParsedValues, positionals: string[]): Promise<number> {
  const [action, ...rest] = positionals;
  const place = placeOf(values);
  if (action === "add") {
    const [name] = positionalsFor("add", rest, ["name"]);
    const user = checkedUser(name!);
    if (values["password-stdin"] !== true) throw new UsageError("users add needs --password-stdin");
    const password = passwordFromStdin();
    const iterations =
      integerValue(values, "iterations", SCRAM_ITERATIONS_DEFAULT) ?? SCRAM_ITERATIONS_DEFAULT;
    const credentials: UserCredentials = {
      "SCRAM-SHA-256": makeScramCredential("SCRAM-SHA-256", password, { iterations }),
      "SCRAM-SHA-512": makeScramCredential("SCRAM-SHA-512", password, { iterations }),
    };
    if (place.kind === "data") {
      changeOffline(place.dir, (state) => {
        state.users.set(user, credentials);
        return 1;
      });
    } else {
      await online(values, API.AlterSecurity, { action: "upsertUser", name: user, credentials });
    }
    console.log(`stored SCRAM-SHA-256 and SCRAM-SHA-512 credentials of user ${user}`);
    return 0;
  }
  if (action === "delete") {
    const [name] = positionalsFor("delete", rest, ["name"]);
    const changed =
      place.kind === "data"
        ? changeOffline(place.dir, (state) => (state.users.delete(name!) ? 1 : 0))
        : Number(
            (await online(values, API.AlterSecurity, { action: "deleteUser", name }))["changed"],
          );
    if (changed === 0) throw new Error(`user ${name} does not exist`);
    console.log(`deleted user ${name}`);
    return 0;
  }
  if (action === "list") {
    positionalsFor("list", rest, []);
    const list =
      place.kind === "data"
        ? [...loadSecurityState(place.dir).users].map(([name, credentials]) => ({
            name,
            mechanisms: Object.keys(credentials).sort(),
          }))
        : ((await online(values, API.DescribeSecurity, { what: "users" }))["users"] as {
            name: string;
            mechanisms: string[];
          }[]);
    if (list.length === 0) console.error("sluice users: no users");
    else
      console.log(
        formatTable([["USER", "MECHANISMS"], ...list.map((u) => [u.name, u.mechanisms.join(",")])]),
      );
    return 0;
  }
  if (action === undefined) throw new UsageError("needs an action: add, delete or list");
  throw new UsageError(`unknown action '${action}' (add, delete or list)`);
}

function checkedUser(name: string): string {
  try {
    return checkUserName(name);
  } catch (error) {
    if (error instanceof SluiceError) throw new UsageError(error.message);
    throw error;
  }
}

const RESOURCE_FLAGS = ["topic", "group", "queue", "exchange", "cluster"] as const;

/** The ACL the flags describe: --principal, --allow|--deny, one resource flag, --prefixed. */
function aclOf(values: ParsedValues): Acl {
  const given = RESOURCE_FLAGS.filter((flag) => values[flag] !== undefined);
  if (given.length !== 1) {
    throw new UsageError("name one resource: --topic, --group, --queue, --exchange or --cluster");
  }
  const resourceType = given[0]!;
  const name = resourceType === "cluster" ? "cluster" : values[resourceType];
  const allow = values["allow"];
  const deny = values["deny"];
  if ((allow === undefined) === (deny === undefined)) {
    throw new UsageError("give --allow OPERATIONS or --deny OPERATIONS");
  }
  const operations = String(allow ?? deny)
    .split(",")
    .map((op) => op.trim());
  try {
    return checkAcl({
      principal: values["principal"],
      resourceType,
      name,
      pattern: values["prefixed"] === true ? "prefixed" : "literal",
      operations,
      permission: allow === undefined ? "deny" : "allow",
    });
  } catch (error) {
    if (error instanceof SluiceError) throw new UsageError(error.message);
    throw error;
  }
}

export async function acls(values: ParsedValues, positionals: string[]): Promise<number> {
  const [action, ...rest] = positionals;
  const place = placeOf(values);
  if (action === "add" || action === "remove" || action === "delete") {
    positionalsFor(action, rest, []);
    const acl = aclOf(values);
    const adding = action === "add";
    const changed =
      place.kind === "data"
        ? changeOffline(place.dir, (state) =>
            adding ? Number(addAcl(state, acl)) : removeAcl(state, acl),
          )
        : Number(
            (
              await online(values, API.AlterSecurity, {
                action: adding ? "addAcl" : "removeAcl",
                acl,
              })
            )["changed"],
          );
    const what = `${acl.permission} ${acl.operations.join(",")} on ${acl.resourceType} ${acl.name}`;
    if (adding)
      console.log(changed > 0 ? `added: ${acl.principal} ${what}` : `already there: ${what}`);
    else if (changed === 0) throw new Error(`no such ACL: ${acl.principal} ${what}`);
    else console.log(`removed: ${acl.principal} ${what}`);
    return 0;
  }
  if (action === "list") {
    positionalsFor("list", rest, []);
    const all =
      place.kind === "data"
        ? loadSecurityState(place.dir).acls
        : ((await online(values, API.DescribeSecurity, { what: "acls" }))["acls"] as Acl[]);
    const principal = values["principal"];
    const list = all.filter((acl) => principal === undefined || acl.principal === principal);
    if (list.length === 0) {
      console.error("sluice acls: no ACLs");
      return 0;
    }
    const rows = list.map((acl) => [
      acl.principal,
      acl.permission,
      acl.operations.join(","),
      acl.resourceType,
      acl.pattern,
      acl.name,
    ]);
    console.log(
      formatTable([
        ["PRINCIPAL", "PERMISSION", "OPERATIONS", "RESOURCE", "PATTERN", "NAME"],
        ...rows,
      ]),
    );
    return 0;
  }
  if (action === undefined) throw new UsageError("needs an action: add, remove or list");
  throw new UsageError(`unknown action '${action}' (add, remove or list)`);
}
