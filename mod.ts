// The package's root entry, `sluice`: every layer in one import, for a Bun or Deno program that
// uses several of them (say, an embedded engine and a server, or a server and the client).
// Programs that need one layer import it alone: `sluice/record` (the batch format, codec and
// SluiceError), `sluice/engine` (storage), `sluice/protocol` (the server, and the client) or
// `sluice/client` (the client only, which loads no storage code).
//
// The engine re-exports record's codec and SluiceError: the same bindings, so they meet here
// without conflict. Two type names mean different things in the engine and in the client, and
// would be ambiguous here; the bare names are the engine's, the client's carry a `Client` prefix
// (`sluice/client` exports them under their own names):
//
//   engine, bare name                         client, prefixed here
//   CommittedOffset   (OffsetStore.fetch)     ClientCommittedOffset   (Admin.fetchOffsets)
//   GroupDescription  (GroupCoordinator)      ClientGroupDescription  (Admin.describeGroup)

export * from "./engine/mod.ts";
export type { CommittedOffset, GroupDescription } from "./engine/mod.ts";
export * from "./protocol/mod.ts";
export type {
  CommittedOffset as ClientCommittedOffset,
  GroupDescription as ClientGroupDescription,
} from "./protocol/mod.ts";
export * from "./record/mod.ts";
