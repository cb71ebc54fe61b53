// The management page served at `/` of the operations listener: one HTML document with its
// style and script inline (no build step, nothing fetched from elsewhere). The script reads
// /api/overview every REFRESH_MS and redraws the tables: topics (partitions, size, records per
// second, per-partition log start and end), consumer groups with state, members and lag,
// queues, exchanges, and the server's counters. Text from the broker (topic and group names)
// is set with textContent, never as HTML.

export const REFRESH_MS = 2000;

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 24px 0 8px; }
table { border-collapse: collapse; } th, td { padding: 3px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; } thead th { border-bottom: 1px solid #999; }
tbody tr:nth-child(odd) { background: #f5f5f5; } .sub { color: #666; } .empty { color: #888; }
details td { font-size: 12px; }
`;

const SCRIPT = `
const REFRESH_MS = ${REFRESH_MS};
const number = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return number.format(n) + " " + units[i];
}
function cell(row, text) { const td = document.createElement("td"); td.textContent = text; row.append(td); return td; }
function fill(id, rows, columns, emptyText) {
  const body = document.getElementById(id);
  body.replaceChildren();
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = cell(tr, emptyText); td.colSpan = columns; td.className = "empty";
    body.append(tr);
    return;
  }
  for (const values of rows) {
    const tr = document.createElement("tr");
    tr.dataset.name = values[0];
    for (const value of values) cell(tr, String(value));
    body.append(tr);
  }
}
function render(s) {
  document.getElementById("status").textContent =
    (s.ready ? "ready" : "starting") + " · up " + Math.round(s.uptimeSeconds) + " s · " +
    (s.server === null ? "" : s.server.connections + " connections · ") +
    number.format(s.recordsAppended) + " records appended since start · updated " +
    new Date(s.timeMs).toLocaleTimeString();
  fill("topics", s.topics.map((t) => [
    t.name, t.partitions.length, bytes(t.sizeBytes), number.format(t.recordsPerSecond),
    t.partitions.reduce((sum, p) => sum + p.end - p.start, 0),
    t.partitions.map((p) => p.partition + ":" + p.start + "-" + p.end).join(" "),
  ]), 6, "no topics");
  fill("groups", s.groups.map((g) => [
    g.group, g.state === null ? "-" : g.state,
    g.memberCount !== null ? g.memberCount : g.members === null ? "-" : g.members.length,
    g.lag, g.partitions.map((p) => p.topic + "/" + p.partition + " lag " + p.lag).join(", "),
    g.members === null ? "" : g.members.join(" "),
  ]), 6, "no groups");
  fill("queues", s.queues.map((q) => [q.name, q.topic, q.members, q.ready, q.acquired, q.delivered]),
    6, "no queues");
  fill("exchanges", s.exchanges.map((e) => [
    e.name, e.type, e.bindings,
    e.alternateExchange !== null ? e.alternateExchange : e.alternateTopic ?? "-",
  ]), 4, "no exchanges");
}
async function refresh() {
  try {
    const response = await fetch("/api/overview", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
    document.body.dataset.loaded = "true";
  } catch (error) {
    document.getElementById("status").textContent = "broker unreachable: " + error.message;
  }
}
refresh();
setInterval(refresh, REFRESH_MS);
`;

export const PAGE_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sluice</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>${STYLE}</style></head>
<body>
<h1>sluice</h1>
<p class="sub" id="status">loading…</p>
<h2>Topics</h2>
<table><thead><tr><th>topic</th><th>partitions</th><th>size</th><th>records/s</th>
<th>records stored</th><th>partition:start-end</th></tr></thead><tbody id="topics"></tbody></table>
<h2>Consumer groups</h2>
<table><thead><tr><th>group</th><th>state</th><th>members</th><th>lag</th><th>partitions</th>
<th>member ids</th></tr></thead><tbody id="groups"></tbody></table>
<h2>Queues</h2>
<table><thead><tr><th>queue</th><th>topic</th><th>members</th><th>ready</th><th>acquired</th>
<th>delivered</th></tr></thead><tbody id="queues"></tbody></table>
<h2>Exchanges</h2>
<table><thead><tr><th>exchange</th><th>type</th><th>bindings</th><th>alternate</th></tr></thead>
<tbody id="exchanges"></tbody></table>
<p class="sub">Refreshed every ${REFRESH_MS / 1000} s from <a href="/api/overview">/api/overview</a>;
<a href="/metrics">/metrics</a> for Prometheus. Groups are those with members or committed
offsets; state as ListGroups reports it (stable, reconciling, empty).</p>
<script>${SCRIPT}</script>
</body></html>
`;
