// `sluice exchanges declare|bind|unbind|delete|list`: exchange administration through the
// Admin client.
//
//   sluice exchanges declare orders --type topic [--alternate-topic unrouted]
//   sluice exchanges bind orders --queue eu --routing-key '*.eu.#'
//   sluice exchanges bind docs --topic pdf --match any --header format=pdf --header kind=report
//   sluice exchanges unbind orders --queue eu --routing-key '*.eu.#'
//   sluice exchanges delete orders
//   sluice exchanges list [--json]
//
// `list --json` prints one JSON object a line, an exchange each, with its bindings.

import type { BindingSettings, ExchangeInfo, ExchangeSettings } from "../protocol/client/mod.ts";
import {
  type Broker,
  formatTable,
  parseBroker,
  positionalsFor,
  requiredString,
  stringValue,
  withAdmin,
} from "./broker_client.ts";
import { type ParsedValues, UsageError } from "./_args.ts";

const DECLARE_FLAGS = ["type", "alternate-exchange", "alternate-topic"];
const BIND_FLAGS = ["queue", "topic", "routing-key", "match", "header"];
const TYPES = ["direct", "fanout", "topic", "headers"];

export async function exchanges(values: ParsedValues, positionals: string[]): Promise<number> {
  const [action, ...rest] = positionals;
  const broker = parseBroker(values["broker"]);
  refuseFlags(action, values);
  if (action === "declare") {
    const [name] = positionalsFor("declare", rest, ["name"]);
    const info = await withAdmin(broker, (admin) =>
      admin.declareExchange(name!, declareSettings(values)),
    );
    console.log(`declared exchange ${info.name} (${info.type})`);
    return 0;
  }
  if (action === "bind" || action === "unbind") {
    const [name] = positionalsFor(action, rest, ["name"]);
    return bind(broker, action, name!, bindingOf(values));
  }
  if (action === "delete") {
    const [name] = positionalsFor("delete", rest, ["name"]);
    await withAdmin(broker, (admin) => admin.deleteExchange(name!));
    console.log(`deleted exchange ${name}`);
    return 0;
  }
  if (action === "list") {
    positionalsFor("list", rest, []);
    return list(broker, values["json"] === true);
  }
  const actions = "declare, bind, unbind, delete or list";
  if (action === undefined) throw new UsageError(`needs an action: ${actions}`);
  throw new UsageError(`unknown action '${action}' (${actions})`);
}

function refuseFlags(action: string | undefined, values: ParsedValues): void {
  const given = (names: string[]) => names.filter((name) => values[name] !== undefined);
  const declareOnly = given(DECLARE_FLAGS);
  if (action !== "declare" && declareOnly.length > 0) {
    throw new UsageError(`--${declareOnly[0]} applies to 'exchanges declare' only`);
  }
  const bindOnly = given(BIND_FLAGS);
  if (action !== "bind" && action !== "unbind" && bindOnly.length > 0) {
    throw new UsageError(`--${bindOnly[0]} applies to 'exchanges bind' and 'unbind' only`);
  }
  if (action !== "list" && values["json"] !== undefined) {
    throw new UsageError("--json applies to 'exchanges list' only");
  }
}

function declareSettings(values: ParsedValues): ExchangeSettings {
  const type = requiredString(values, "type");
  if (!TYPES.includes(type)) throw new UsageError(`--type ${type} is not ${TYPES.join(", ")}`);
  const settings: ExchangeSettings = { type: type as ExchangeSettings["type"] };
  const alternateExchange = stringValue(values["alternate-exchange"], "alternate-exchange");
  const alternateTopic = stringValue(values["alternate-topic"], "alternate-topic");
  if (alternateExchange !== undefined && alternateTopic !== undefined) {
    throw new UsageError("--alternate-exchange and --alternate-topic exclude each other");
  }
  if (alternateExchange !== undefined) settings.alternateExchange = alternateExchange;
  if (alternateTopic !== undefined) settings.alternateTopic = alternateTopic;
  return settings;
}

/** `--header k=v`, repeatable, as a list of pairs (every pair kept, in order). */
export function headerPairs(values: ParsedValues): [string, string][] {
  const raw = values["header"];
  const list = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
  return list.map((item) => {
    const text = typeof item === "string" ? item : "";
    const at = text.indexOf("=");
    if (at < 1) throw new UsageError(`--header ${text} is not KEY=VALUE`);
    return [text.slice(0, at), text.slice(at + 1)];
  });
}

function bindingOf(values: ParsedValues): BindingSettings {
  const queue = stringValue(values["queue"], "queue");
  const topic = stringValue(values["topic"], "topic");
  if ((queue === undefined) === (topic === undefined)) {
    throw new UsageError("needs exactly one of --queue Q and --topic T");
  }
  const binding: BindingSettings = queue === undefined ? { topic: topic! } : { queue };
  const routingKey = stringValue(values["routing-key"], "routing-key");
  if (routingKey !== undefined) binding.routingKey = routingKey;
  const match = stringValue(values["match"], "match");
  if (match !== undefined) {
    if (match !== "all" && match !== "any")
      throw new UsageError(`--match ${match} is not all or any`);
    binding.match = match;
  }
  const pairs = headerPairs(values);
  if (pairs.length > 0) {
    const headers: Record<string, string> = {};
    for (const [key, value] of pairs) {
      if (key in headers) throw new UsageError(`--header ${key} is given twice for one binding`);
      headers[key] = value;
    }
    binding.headers = headers;
  }
  return binding;
}

async function bind(
  broker: Broker,
  action: "bind" | "unbind",
  name: string,
  binding: BindingSettings,
): Promise<number> {
  const changed = await withAdmin(broker, (admin) =>
    action === "bind" ? admin.bindExchange(name, binding) : admin.unbindExchange(name, binding),
  );
  const target = binding.queue === undefined ? `topic ${binding.topic}` : `queue ${binding.queue}`;
  const verb = action === "bind" ? "bound" : "unbound";
  const note = changed ? "" : action === "bind" ? " (it was bound already)" : " (it was not bound)";
  console.log(`${verb} ${target} ${action === "bind" ? "to" : "from"} exchange ${name}${note}`);
  return 0;
}

function bindingText(binding: ExchangeInfo["bindings"][number], type: string): string {
  const target = binding.queue === null ? `topic:${binding.topic}` : `queue:${binding.queue}`;
  if (type === "fanout") return target;
  if (type === "headers") {
    const pairs = Object.entries(binding.headers).map(([k, v]) => `${k}=${v}`);
    return `${target} ${binding.match}(${pairs.join(",")})`;
  }
  return `${target} '${binding.routingKey}'`;
}

async function list(broker: Broker, json: boolean): Promise<number> {
  const found = await withAdmin(broker, (admin) => admin.listExchanges());
  if (json) {
    for (const exchange of found) console.log(JSON.stringify(exchange));
    return 0;
  }
  const rows = [["EXCHANGE", "TYPE", "ALTERNATE", "BINDINGS"]];
  for (const exchange of found) {
    const alternate = exchange.alternateExchange ?? exchange.alternateTopic ?? "-";
    const bindings = exchange.bindings.map((b) => bindingText(b, exchange.type)).join("; ");
    rows.push([exchange.name, exchange.type, alternate, bindings || "-"]);
  }
  console.log(formatTable(rows));
  return 0;
}
