// The operations listener, opt-in with `sluice serve --http-port N` (node:http, so it runs on
// Bun, Deno and Node):
//
//   GET /metrics        Prometheus text format (./metrics.ts)
//   GET /healthz        200 "ok" while the process runs
//   GET /readyz         200 "ready" once recovered and listening for clients, else 503
//   GET /api/overview   the Snapshot as JSON (what the page shows)
//   GET /               the management page (./page.ts): no build step, no external files
//
// Anything else is 404; methods other than GET and HEAD are 405. It binds 127.0.0.1 unless
// told otherwise (--http-host). With a token (`--http-token`, required by `serve` when
// authentication is on) every path answers 401 unless the request carries it, as
// `Authorization: Bearer TOKEN` (scrapers, probes) or as the password of HTTP Basic with any
// user name (a browser asks for it once and sends it with the page's own requests).
// With `tls` (`serve --http-tls`, the listener's own --tls-cert and --tls-key) it speaks HTTPS
// only, TLS 1.2 and later, so the token never crosses the network in clear.

import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createSecureServer } from "node:https";
import type { Engine } from "../engine/mod.ts";
import { API, type SluiceServer, wireErrorName } from "../protocol/mod.ts";
import type { Logger } from "./log.ts";
import { METRICS_CONTENT_TYPE, METRICS_PARTITIONS_MAX_DEFAULT, renderMetrics } from "./metrics.ts";
import { PAGE_HTML } from "./page.ts";
import {
  type GroupSource,
  type RequestLatency,
  type ServerCounters,
  Sampler,
  type Snapshot,
  takeSnapshot,
} from "./snapshot.ts";

export type OpsHttpOptions = {
  host: string;
  port: number;
  engine: Engine;
  metricsPartitionsMax?: number;
  /** When set, every request must carry it (see the file's header). */
  token?: string;
  /** PEM certificate chain and key: the listener speaks HTTPS only. */
  tls?: { cert: string; key: string };
  log?: Logger;
};

/** Hashes first, so the comparison takes the same time whatever the lengths. */
function sameSecret(given: string, expected: string): boolean {
  const digest = (text: string) => createHash("sha256").update(text).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** The token the request carries: Bearer, or the password of Basic; undefined if none. */
function presentedToken(request: IncomingMessage): string | undefined {
  const header = request.headers.authorization;
  if (header === undefined) return undefined;
  const [scheme, value] = header.split(" ", 2);
  if (value === undefined) return undefined;
  if (scheme?.toLowerCase() === "bearer") return value;
  if (scheme?.toLowerCase() !== "basic") return undefined;
  const decoded = Buffer.from(value, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return colon === -1 ? undefined : decoded.slice(colon + 1);
}

export type OpsHttp = {
  /** Whether it speaks HTTPS. */
  tls: boolean;
  readonly host: string;
  readonly port: number;
  /** The native listener is up: /readyz answers 200 from now on. */
  ready(server: SluiceServer): void;
  snapshot(): Snapshot;
  close(): Promise<void>;
};

function countersOf(server: SluiceServer): ServerCounters {
  const stats = server.stats();
  const number = (key: string) => (typeof stats[key] === "number" ? (stats[key] as number) : 0);
  const requests = (stats["requests"] ?? {}) as Record<string, number>;
  return {
    connections: number("connections"),
    bytesIn: number("bytesIn"),
    bytesOut: number("bytesOut"),
    socketWrites: number("socketWrites"),
    requests,
    refusedRequests: number("refusedRequests"),
  };
}

const API_NAMES = new Map<number, string>(Object.entries(API).map(([name, key]) => [key, name]));

/** The server's latency and error counts, keyed by API and error names. */
function latencyOf(server: SluiceServer): RequestLatency {
  const { requestSeconds, kafkaRequestSeconds, errors } = server.latency();
  return {
    requestSeconds: Object.fromEntries(
      [...requestSeconds].map(([key, histogram]) => [API_NAMES.get(key) ?? `api_${key}`, histogram]),
    ),
    kafkaRequestSeconds: Object.fromEntries(kafkaRequestSeconds),
    errors: Object.fromEntries(
      [...errors].map(([code, count]) => [wireErrorName(code) ?? `code_${code}`, count]),
    ),
  };
}

/**
 * The broker's groups, read in process: the listener runs inside `serve`, so it needs none of
 * the native listener's credentials or TLS, and sees what ListGroups and DescribeGroup answer.
 */
function groupsOf(server: SluiceServer): GroupSource {
  return {
    list: () => server.listGroups(),
    memberIds: (groupId) => server.describeGroup(groupId).members.map((m) => m.memberId),
    rebalances: () => server.groupRebalances(),
  };
}

function send(response: ServerResponse, status: number, type: string, body: string): void {
  response.writeHead(status, {
    "content-type": type,
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
  });
  response.end(response.req.method === "HEAD" ? undefined : body);
}

export async function startOpsHttp(options: OpsHttpOptions): Promise<OpsHttp> {
  const sampler = new Sampler(options.engine);
  sampler.start();
  const startedMs = Date.now();
  let broker: SluiceServer | undefined;
  const snapshot = () =>
    takeSnapshot({
      engine: options.engine,
      sampler,
      startedMs,
      server: () => (broker === undefined ? null : countersOf(broker)),
      latency: () => (broker === undefined ? null : latencyOf(broker)),
      groups: () => (broker === undefined ? null : groupsOf(broker)),
      ready: () => broker !== undefined,
    });
  const partitionsMax = options.metricsPartitionsMax ?? METRICS_PARTITIONS_MAX_DEFAULT;
  const route = (request: IncomingMessage, response: ServerResponse) => {
    if (options.token !== undefined) {
      const given = presentedToken(request);
      if (given === undefined || !sameSecret(given, options.token)) {
        response.setHeader("www-authenticate", 'Basic realm="sluice", charset="UTF-8"');
        return send(response, 401, "text/plain", "a token is required (Bearer, or Basic password)\n");
      }
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      return send(response, 405, "text/plain", "method not allowed\n");
    }
    const path = (request.url ?? "/").split("?")[0];
    if (path === "/healthz") return send(response, 200, "text/plain", "ok\n");
    if (path === "/readyz") {
      return broker === undefined
        ? send(response, 503, "text/plain", "not ready: recovering or not yet listening\n")
        : send(response, 200, "text/plain", "ready\n");
    }
    if (path === "/metrics") {
      return send(response, 200, METRICS_CONTENT_TYPE, renderMetrics(snapshot(), partitionsMax));
    }
    if (path === "/api/overview") {
      return send(response, 200, "application/json", JSON.stringify(snapshot()));
    }
    if (path === "/") return send(response, 200, "text/html; charset=utf-8", PAGE_HTML);
    return send(response, 404, "text/plain", `no such page: ${path}\n`);
  };
  const handle = (request: IncomingMessage, response: ServerResponse) => {
    try {
      route(request, response);
    } catch (error) {
      options.log?.error("http request failed", { url: request.url, error: String(error) });
      if (!response.headersSent) send(response, 500, "text/plain", "internal error\n");
    }
  };
  const tls = options.tls;
  const server: Server =
    tls === undefined
      ? createServer(handle)
      : createSecureServer({ cert: tls.cert, key: tls.key, minVersion: "TLSv1.2" }, handle);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port, options.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (error) {
    sampler.stop();
    throw error;
  }
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : options.port;
  return {
    host: options.host,
    port,
    tls: tls !== undefined,
    ready(native) {
      broker = native;
    },
    snapshot,
    async close() {
      sampler.stop();
      server.closeAllConnections?.();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
