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
// told otherwise (--http-host). It has no authentication: sluice has none yet on any listener,
// and once it has, this listener must be put behind the same (see ARCHITECTURE.md).

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Engine } from "../engine/mod.ts";
import type { SluiceServer } from "../protocol/mod.ts";
import type { Logger } from "./log.ts";
import { METRICS_CONTENT_TYPE, METRICS_PARTITIONS_MAX_DEFAULT, renderMetrics } from "./metrics.ts";
import { PAGE_HTML } from "./page.ts";
import { type ServerCounters, Sampler, type Snapshot, takeSnapshot } from "./snapshot.ts";

export type OpsHttpOptions = {
  host: string;
  port: number;
  engine: Engine;
  metricsPartitionsMax?: number;
  log?: Logger;
};

export type OpsHttp = {
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
    requests,
    refusedRequests: number("refusedRequests"),
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
      ready: () => broker !== undefined,
    });
  const partitionsMax = options.metricsPartitionsMax ?? METRICS_PARTITIONS_MAX_DEFAULT;
  const route = (request: IncomingMessage, response: ServerResponse) => {
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
  const server: Server = createServer((request, response) => {
    try {
      route(request, response);
    } catch (error) {
      options.log?.error("http request failed", { url: request.url, error: String(error) });
      if (!response.headersSent) send(response, 500, "text/plain", "internal error\n");
    }
  });
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
