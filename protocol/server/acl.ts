// Access control lists: who may do what to which resource (PROTOCOL.md section 11.4).
//
//   Acl = principal × resource (type, name, literal or prefixed) × operations × allow | deny
//
// A request is allowed when a superuser makes it, or when some allow rule matches and no deny
// rule does (deny wins). Everything else is denied. Read, write, delete and alter each imply
// describe on the same resource, as in Kafka. The principal `*` matches every authenticated
// principal; the literal name `*` matches every resource of its type.

import { SluiceError } from "../../record/mod.ts";

export const RESOURCE_TYPES = ["cluster", "topic", "group", "queue", "exchange"] as const;
export type ResourceType = (typeof RESOURCE_TYPES)[number];

export const OPERATIONS = ["read", "write", "create", "delete", "describe", "alter"] as const;
export type Operation = (typeof OPERATIONS)[number];

export type PatternType = "literal" | "prefixed";
export type Permission = "allow" | "deny";

/** The one cluster resource's name. */
export const CLUSTER_NAME = "cluster";

export type Acl = {
  principal: string;
  resourceType: ResourceType;
  name: string;
  pattern: PatternType;
  operations: Operation[];
  permission: Permission;
};

/** Rules and the longest names and lists the store accepts. */
export const ACL_NAME_BYTES_MAX = 255;
export const ACLS_MAX = 100_000;

const IMPLIES_DESCRIBE: ReadonlySet<Operation> = new Set(["read", "write", "delete", "alter"]);

function invalid(message: string, value: unknown): never {
  throw new SluiceError("INVALID_CONFIG", message, { value: String(value) });
}

function checkedName(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length === 0) invalid(`${what} must be a name`, value);
  if (new TextEncoder().encode(value).length > ACL_NAME_BYTES_MAX) {
    invalid(`${what} ${value.slice(0, 40)}… is longer than ${ACL_NAME_BYTES_MAX} bytes`, value);
  }
  return value;
}

/** Validates an ACL from the wire, the CLI or the store; throws INVALID_CONFIG. */
export function checkAcl(value: unknown): Acl {
  if (typeof value !== "object" || value === null) invalid("an ACL must be a map", value);
  const fields = value as Record<string, unknown>;
  const resourceType = fields["resourceType"];
  if (!RESOURCE_TYPES.includes(resourceType as ResourceType)) {
    invalid(`resource type ${String(resourceType)} is not one of ${RESOURCE_TYPES}`, resourceType);
  }
  const pattern = fields["pattern"] ?? "literal";
  if (pattern !== "literal" && pattern !== "prefixed") {
    invalid(`pattern ${String(pattern)} is not literal or prefixed`, pattern);
  }
  const permission = fields["permission"] ?? "allow";
  if (permission !== "allow" && permission !== "deny") {
    invalid(`permission ${String(permission)} is not allow or deny`, permission);
  }
  const operations = fields["operations"];
  if (!Array.isArray(operations) || operations.length === 0 || operations.length > 6) {
    invalid("operations must be a list of 1 to 6 operations", operations);
  }
  for (const operation of operations) {
    if (!OPERATIONS.includes(operation)) {
      invalid(`operation ${String(operation)} is not one of ${OPERATIONS}`, operation);
    }
  }
  return {
    principal: checkedName(fields["principal"], "principal"),
    resourceType: resourceType as ResourceType,
    name: checkedName(fields["name"], "resource name"),
    pattern,
    operations: [...new Set(operations as Operation[])].sort(),
    permission,
  };
}

export function sameAcl(a: Acl, b: Acl): boolean {
  return (
    a.principal === b.principal &&
    a.resourceType === b.resourceType &&
    a.name === b.name &&
    a.pattern === b.pattern &&
    a.permission === b.permission &&
    a.operations.join(",") === b.operations.join(",")
  );
}

function nameMatches(acl: Acl, name: string): boolean {
  if (acl.pattern === "prefixed") return name.startsWith(acl.name);
  return acl.name === "*" || acl.name === name;
}

/** Whether every name `pattern` matches is matched by `deny` too. */
function covers(deny: Acl, pattern: Acl): boolean {
  if (deny.pattern === "literal") return deny.name === "*";
  if (pattern.pattern === "literal") return false; // "*": every name; a prefix covers only some
  return pattern.name.startsWith(deny.name);
}

function operationMatches(acl: Acl, operation: Operation): boolean {
  if (acl.operations.includes(operation)) return true;
  if (operation !== "describe" || acl.permission === "deny") return false;
  return acl.operations.some((granted) => IMPLIES_DESCRIBE.has(granted));
}

/** The rules in force and the superusers: answers "may P do O on R?". */
export class Authorizer {
  readonly superUsers: ReadonlySet<string>;
  #byPrincipal = new Map<string, Acl[]>();
  /** Bumped on every change: per-connection decision caches compare it. */
  version = 0;

  constructor(acls: readonly Acl[], superUsers: readonly string[] = []) {
    this.superUsers = new Set(superUsers);
    this.replace(acls);
  }

  replace(acls: readonly Acl[]): void {
    this.#byPrincipal.clear();
    for (const acl of acls) {
      const list = this.#byPrincipal.get(acl.principal) ?? [];
      list.push(acl);
      this.#byPrincipal.set(acl.principal, list);
    }
    this.version++;
  }

  allowed(principal: string, type: ResourceType, name: string, operation: Operation): boolean {
    if (this.superUsers.has(principal)) return true;
    let allow = false;
    for (const list of [this.#byPrincipal.get(principal), this.#byPrincipal.get("*")]) {
      for (const acl of list ?? []) {
        if (acl.resourceType !== type || !nameMatches(acl, name)) continue;
        if (!operationMatches(acl, operation)) continue;
        if (acl.permission === "deny") return false;
        allow = true;
      }
    }
    return allow;
  }

  /**
   * Whether `principal` may do `operation` on at least one resource of `type`: some allow rule
   * grants it on a name (or a pattern) that no deny rule covers whole.
   */
  allowedOnAny(principal: string, type: ResourceType, operation: Operation): boolean {
    if (this.superUsers.has(principal)) return true;
    const rules = [
      ...(this.#byPrincipal.get(principal) ?? []),
      ...(this.#byPrincipal.get("*") ?? []),
    ];
    const denies = rules.filter(
      (acl) =>
        acl.resourceType === type && acl.permission === "deny" && operationMatches(acl, operation),
    );
    return rules.some((acl) => {
      if (acl.resourceType !== type || acl.permission !== "allow") return false;
      if (!operationMatches(acl, operation)) return false;
      if (acl.pattern === "literal" && acl.name !== "*") {
        return this.allowed(principal, type, acl.name, operation);
      }
      // A pattern: denied whole only by a deny rule whose own pattern covers all of it.
      return !denies.some((deny) => covers(deny, acl));
    });
  }
}
