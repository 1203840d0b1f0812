// AeroGuard's built-in dashboard: polls the JSON API and draws with plain SVG (no CDN).
// Each panel loads on its own; a failed fetch shows "unavailable" in that panel only.
"use strict";

const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);
let sensor = null;

async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function table(headers, rows) {
  const t = el("table");
  const head = el("tr");
  headers.forEach((h) => head.appendChild(el("th", {}, h)));
  t.appendChild(head);
  rows.forEach((cells) => {
    const tr = el("tr");
    cells.forEach((c) => {
      const td = el("td", c.cls ? { class: c.cls } : {}, c.text ?? c);
      tr.appendChild(td);
    });
    t.appendChild(tr);
  });
  return t;
}

function unavailable(panel, what, error) {
  $(panel).replaceChildren(el("p", { class: "unavailable" }, `${what} unavailable: ${error.message}`));
}

const fmtTime = (ms) => new Date(ms).toLocaleTimeString();
const fmt = (x) => (x === null || x === undefined ? "" : Number(x).toPrecision(4));

function drawChart(recent) {
  if (!recent.length) { $("chart").replaceChildren(el("p", {}, "no readings yet")); return; }
  const W = 900, H = 260, P = 40;
  const xs = recent.map((r) => r.timestamp), ys = recent.map((r) => r.value);
  const x0 = Math.min(...xs), x1 = Math.max(...xs) || x0 + 1;
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const sx = (x) => P + ((x - x0) / Math.max(x1 - x0, 1)) * (W - 2 * P);
  const sy = (y) => H - P - ((y - y0) / (y1 - y0)) * (H - 2 * P);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("width", "100%");
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.appendChild(n);
    return n;
  };
  add("line", { x1: P, y1: H - P, x2: W - P, y2: H - P, stroke: "#999" });
  add("line", { x1: P, y1: P, x2: P, y2: H - P, stroke: "#999" });
  add("text", { x: 2, y: sy(y1) + 4 }, fmt(y1));
  add("text", { x: 2, y: sy(y0) + 4 }, fmt(y0));
  add("text", { x: P, y: H - P + 16 }, fmtTime(x0));
  add("text", { x: W - P - 60, y: H - P + 16 }, fmtTime(x1));
  add("polyline", { points: recent.map((r) => `${sx(r.timestamp)},${sy(r.value)}`).join(" "),
                    fill: "none", stroke: "#1a73e8", "stroke-width": 1.5, id: "series" });
  recent.filter((r) => r.verdict >= 1).forEach((r) => {
    add("circle", { cx: sx(r.timestamp), cy: sy(r.value), r: r.verdict === 2 ? 5 : 4,
                    class: r.verdict === 2 ? "marker critical" : "marker warning",
                    fill: r.verdict === 2 ? "#c5221f" : "#e8a200" });
  });
  $("chart").replaceChildren(svg);
}

function drawDetectors(ballots) {
  const names = Object.keys(ballots).sort();
  if (!names.length) { $("detectors").replaceChildren(el("p", {}, "no verdicts yet")); return; }
  $("detectors").replaceChildren(table(["detector", "latest vote", "score", "at"], names.map((n) => {
    const b = ballots[n];
    const vote = b.vote === undefined ? { text: "—", cls: "vote-none" }
      : b.vote ? { text: "anomalous", cls: "vote-yes" } : { text: "normal", cls: "vote-no" };
    return [n, vote, fmt(b.score), fmtTime(b.timestamp)];
  })));
}

async function refreshSensor() {
  if (!sensor) {
    $("chart").replaceChildren(el("p", {}, "no readings yet"));
    $("detectors").replaceChildren(el("p", {}, "no verdicts yet"));
    return;
  }
  $("sensor-name").textContent = `of ${sensor}`;
  try {
    const detail = await getJSON(`/api/v1/sensors/${encodeURIComponent(sensor)}?count=300`);
    drawChart(detail.recent);
    drawDetectors(detail.ballots);
  } catch (error) {
    unavailable("chart", "readings", error);
    unavailable("detectors", "detector votes", error);
  }
}

// /api/v1/sensors answers a page at a time: each poll re-reads only the pages shown so far
// (one, until "more sensors" is pressed), not every sensor there is.
const SENSOR_PAGE = 100;
let sensorPages = 1;

async function sensorNames() {
  const names = [];
  let after = null;
  for (let page = 0; page < sensorPages; page++) {
    const query = `count=${SENSOR_PAGE}` + (after ? `&after=${encodeURIComponent(after)}` : "");
    const body = await getJSON(`/api/v1/sensors?${query}`);
    names.push(...body.sensors.map((s) => s.sensor));
    after = body.next_after || null;
    if (!after) break;
  }
  $("more-sensors").hidden = !after;
  return names;
}

async function refreshSensors() {
  try {
    const select = $("sensor");
    const names = await sensorNames();
    if (!sensor) sensor = names.includes(document.body.dataset.defaultSensor) ? document.body.dataset.defaultSensor : names[0] || null;
    if (sensor && !names.includes(sensor)) names.push(sensor);  // chosen from a page no longer shown
    const current = Array.from(select.options).map((o) => o.value).join();
    if (current !== names.join()) {
      select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    }
    if (sensor) select.value = sensor;
    return true;
  } catch (error) {
    unavailable("chart", "readings", error);
    unavailable("detectors", "detector votes", error);
    return false;
  }
}

async function refreshCluster() {
  try {
    const body = await getJSON("/api/v1/cluster");
    const groups = Object.entries(body.groups || {});
    if (!groups.length) { $("cluster").replaceChildren(el("p", {}, "no edge groups registered")); return; }
    $("cluster").replaceChildren(table(["group", "leader", "epoch", "last round", "live nodes"], groups.map(([name, g]) => [
      name, g.leader ?? "none", g.epoch ?? "", g.last_round ?? "",
      (g.live_nodes || []).map((n) => `${n.node_id} (pid ${n.pid})`).join(", "),
    ])));
  } catch (error) { unavailable("cluster", "cluster (ZooKeeper)", error); }
}

async function refreshIncidents() {
  try {
    const body = await getJSON("/api/v1/incidents?count=10");
    if (!body.incidents.length) { $("incidents").replaceChildren(el("p", {}, "no incidents recorded")); return; }
    $("incidents").replaceChildren(table(["start", "end", "subject", "kind", "peak", "votes", "detectors"],
      body.incidents.map((i) => [
        fmtTime(i.start),
        i.state === "open" ? { text: "open", cls: "verdict-critical" } : fmtTime(i.end),
        i.subject, i.kind === "decision" ? "critical" : "sensor fault", fmt(i.peak.value),
        `${i.peak.votes} (${i.alarms} alarms)`, i.detectors.join(", "),
      ])));
  } catch (error) { unavailable("incidents", "incidents", error); }
}

async function refreshAnomalies() {
  try {
    const body = await getJSON("/api/v1/anomalies?count=15");
    if (!body.events.length) { $("anomalies").replaceChildren(el("p", {}, "no anomalies recorded")); return; }
    $("anomalies").replaceChildren(table(["time", "sensor", "kind", "verdict / node", "value", "votes"], body.events.map((e) => [
      fmtTime(e.timestamp), e.sensor, e.kind,
      e.kind === "decision" ? { text: e.excursion_ended ? `${e.verdict} (excursion ended)` : e.unconfirmed ? `${e.verdict} (unconfirmed)` : e.verdict, cls: `verdict-${e.verdict}` }
        : `${e.node_id}: ${e.reason || "excluded"}`,
      fmt(e.value),
      e.quorum ? `${e.quorum.votes} of ${e.quorum.of}` : "",
    ])));
  } catch (error) { unavailable("anomalies", "anomalies", error); }
}

async function refreshHealth() {
  const badge = $("health");
  try {
    const response = await fetch("/readyz", { headers: { Accept: "application/json" } });
    const body = await response.json();
    const down = Object.entries(body.checks).filter(([, s]) => s !== "ok" && s !== "connected" && s !== "not configured");
    const degraded = body.degraded || [];
    badge.className = "status " + (down.length ? "bad" : degraded.length ? "degraded" : "ok");
    badge.textContent = down.length ? `down: ${down.map(([n, s]) => `${n} (${s})`).join(", ")}`
      : degraded.length ? `degraded: ${degraded.join(", ")}` : "all dependencies up";
  } catch (error) {
    badge.className = "status bad";
    badge.textContent = `web tier unreachable: ${error.message}`;
  }
}

async function refresh() {
  const sensorsKnown = await refreshSensors();
  await Promise.all([sensorsKnown ? refreshSensor() : null, refreshCluster(), refreshIncidents(), refreshAnomalies(), refreshHealth()]);
  document.body.dataset.loaded = "true";
}

$("sensor").addEventListener("change", (event) => { sensor = event.target.value; refreshSensor(); });
$("more-sensors").addEventListener("click", () => { sensorPages += 1; refreshSensors(); });
refresh();
setInterval(refresh, POLL_MS);
