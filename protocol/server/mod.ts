// The sluice broker's listener: a TCP server that maps the wire protocol (../PROTOCOL.md) onto
// the engine, through engine/mod.ts only. `SluiceServer.start({ dataDir, host, port, limits })`
// opens an engine and listens; `close()` shuts down cleanly.

export {
  resolveServerLimits,
  SERVER_LIMITS_DEFAULT,
  SERVER_LIMITS_RANGE,
  type ServerLimits,
} from "./limits.ts";
export {
  EXIT_CODE_INVARIANT,
  type KafkaOptions,
  type ServerEvent,
  type ServerLatency,
  type ServerOptions,
  SluiceServer,
  stopOnInvariant,
} from "./server.ts";
export type { TransportKind } from "./_transport.ts";
export type { ListedGroup } from "./_admin.ts";
export type { AuthMethod, SecurityOptions } from "./_auth.ts";
export type { TlsPrincipalMapping, TlsServerOptions } from "./_tls.ts";
export {
  ACL_NAME_BYTES_MAX,
  type Acl,
  Authorizer,
  CLUSTER_NAME,
  checkAcl,
  OPERATIONS,
  type Operation,
  RESOURCE_TYPES,
  type ResourceType,
} from "./acl.ts";
export {
  addAcl,
  checkUserName,
  dataDirHolder,
  emptySecurityState,
  loadSecurityState,
  removeAcl,
  SECURITY_FILE,
  type SecurityState,
  saveSecurityState,
  type UserCredentials,
} from "./security_store.ts";
