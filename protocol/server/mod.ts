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
  type ServerOptions,
  SluiceServer,
  stopOnInvariant,
} from "./server.ts";
export type { TransportKind } from "./_transport.ts";
