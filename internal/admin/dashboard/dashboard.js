// The mattingctl dashboard: polls /api/dashboard once a second and draws
// the last 15 minutes as SVG paths. No library, nothing from elsewhere.
"use strict";
(function () {
  const KEEP = 900; // seconds kept, and the widest a chart gets
  const $ = (sel) => document.querySelector(sel);
  const hist = { t: [], cols: {}, spark: {} }; // the points, by column
  const COLS = ["rps_2xx", "rps_4xx", "rps_5xx", "rps_rejected", "p50_ms", "p95_ms", "p99_ms", "queued", "inflight", "capacity"];
  let since = 0, after = 0, status = null, serverTime = 0, pending = false;

  // The admin token: `mattingctl dashboard` hands it over as ?token=. It is
  // kept in sessionStorage, which is this origin's (scheme, host and port)
  // and this tab's alone, rather than a cookie, which the browser would
  // also send to every other port of 127.0.0.1, another user's server
  // among them. It leaves the address bar (and history) at once.
  const TOKEN = "mattingctl-token";
  const params = new URLSearchParams(location.search);
  if (params.has("token")) {
    sessionStorage.setItem(TOKEN, params.get("token"));
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  }
  const token = () => sessionStorage.getItem(TOKEN) || "";

  const charts = [
    { id: "chart-rps", total: true, lines: [
      { col: "rps_2xx", label: "2xx", color: "var(--ok)" }, { col: "rps_4xx", label: "4xx", color: "var(--c4)" },
      { col: "rps_5xx", label: "5xx", color: "var(--c5)" }, { col: "rps_rejected", label: "503 rejected", color: "var(--rej)" }] },
    { id: "chart-latency", lines: [
      { col: "p50_ms", label: "p50", color: "var(--p50)" }, { col: "p95_ms", label: "p95", color: "var(--p95)" },
      { col: "p99_ms", label: "p99", color: "var(--p99)" }] },
    { id: "chart-queue", whole: true, lines: [{ col: "queued", label: "queued", color: "var(--p50)" }] },
    { id: "chart-inflight", whole: true, lines: [
      { col: "inflight", label: "in flight", color: "var(--p50)" }, { col: "capacity", label: "capacity", color: "var(--muted)" }] },
  ];

  function append(series) {
    const n = series.t.length;
    if (n === 0) return;
    const before = hist.t.length;
    hist.t.push(...series.t);
    for (const c of COLS) (hist.cols[c] = hist.cols[c] || []).push(...series[c]);
    const lat = series.replica_latency_ms || {};
    for (const name of Object.keys(lat)) {
      if (!hist.spark[name]) hist.spark[name] = new Array(before).fill(null);
    }
    for (const name of Object.keys(hist.spark)) hist.spark[name].push(...(lat[name] || new Array(n).fill(null)));
    const drop = hist.t.length - KEEP;
    if (drop > 0) {
      hist.t.splice(0, drop);
      for (const c of COLS) hist.cols[c].splice(0, drop);
      for (const name of Object.keys(hist.spark)) hist.spark[name].splice(0, drop);
    }
    since = hist.t[hist.t.length - 1];
  }

  // span is the seconds a chart covers: since the first point, at least
  // a minute, at most 15.
  function span(end) {
    return hist.t.length ? Math.min(KEEP, Math.max(60, end - hist.t[0])) : 60;
  }

  // pathOf draws values (null: a gap) at times ts on a w x h box whose
  // x axis ends at end and whose y axis goes up to top.
  function pathOf(ts, values, end, top, w, h) {
    const SPAN = span(end);
    let d = "", pen = false;
    for (let i = 0; i < ts.length; i++) {
      const v = values[i];
      if (v === null || v === undefined) { pen = false; continue; }
      const x = w - (end - ts[i]) * w / SPAN, y = h - Math.min(v / top, 1) * h;
      d += (pen ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
      pen = true;
    }
    return d;
  }

  // yScale returns the ticks of a y axis for values up to max: about
  // four steps of 1, 2, 2.5 or 5 times a power of ten (whole numbers only
  // when whole), the last a little above max, so that a line at max
  // stays in sight.
  function yScale(max, whole) {
    const want = max > 0 ? max * 1.05 : 1;
    const raw = want / 4, p = Math.pow(10, Math.floor(Math.log10(raw)));
    let step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((st) => st >= raw);
    if (whole) step = Math.max(1, step === 2.5 * p && p < 10 ? 5 * p : Math.ceil(step));
    const ticks = [0];
    for (let i = 1; ticks[i - 1] < want; i++) ticks.push(i * step);
    return { top: ticks[ticks.length - 1], step, ticks };
  }

  const tickLabel = (v, step) => step >= 1 ? String(Math.round(v)) : v.toFixed(step >= 0.1 ? 1 : 2);

  // xTicks returns the times to mark on an x axis ending at end: every
  // 10 s to 10 min, about five of them, on round local clock times.
  function xTicks(end) {
    const SPAN = span(end);
    const step = [10, 15, 30, 60, 120, 300, 600].find((st) => SPAN / st <= 6) || 600;
    const ticks = [];
    for (let t = Math.ceil((end - SPAN) / step) * step; t <= end; t += step) ticks.push(t);
    return { ticks, step, SPAN };
  }

  function clock(t, seconds) {
    const opts = { hour: "2-digit", minute: "2-digit", hour12: false };
    if (seconds) opts.second = "2-digit";
    return new Date(t * 1000).toLocaleTimeString([], opts);
  }

  function niceTop(max) {
    if (!(max > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(max)));
    for (const m of [1, 2, 2.5, 5, 10]) if (max <= m * p) return m * p;
    return 10 * p;
  }

  const fmt = (v, unit) => v === null || v === undefined ? "–" : (v >= 100 ? Math.round(v) : Math.round(v * 10) / 10) + (unit || "");

  function drawChart(c) {
    const fig = document.getElementById(c.id), svg = fig.querySelector("svg");
    const end = serverTime || (hist.t.length ? hist.t[hist.t.length - 1] : 0);
    let max = 0;
    for (const l of c.lines) for (const v of hist.cols[l.col] || []) if (v !== null && v > max) max = v;
    const y = yScale(max, c.whole), x = xTicks(end), top = y.top;
    let out = "", yl = "", xl = "";
    for (const v of y.ticks) {
      const f = v / top;
      if (v > 0) out += `<line class="grid" x1="0" x2="900" y1="${(160 * (1 - f)).toFixed(1)}" y2="${(160 * (1 - f)).toFixed(1)}"/>`;
      yl += `<span style="top:${(100 * (1 - f)).toFixed(2)}%">${tickLabel(v, y.step)}</span>`;
    }
    for (const t of x.ticks) {
      const f = 1 - (end - t) / x.SPAN;
      out += `<line class="grid" y1="0" y2="160" x1="${(900 * f).toFixed(1)}" x2="${(900 * f).toFixed(1)}"/>`;
      const edge = f < 0.04 ? ' class="first"' : f > 0.96 ? ' class="last"' : "";
      xl += `<span${edge} style="left:${(100 * f).toFixed(2)}%">${clock(t, x.step < 60)}</span>`;
    }
    for (const l of c.lines) {
      out += `<path style="stroke:${l.color}" data-col="${l.col}" d="${pathOf(hist.t, hist.cols[l.col] || [], end, top, 900, 160)}"/>`;
    }
    svg.innerHTML = out;
    fig.querySelector(".yticks").innerHTML = yl;
    fig.querySelector(".xticks").innerHTML = xl;
    const last = hist.t.length - 1;
    let legend = "", total = 0;
    for (const l of c.lines) {
      const v = last >= 0 ? hist.cols[l.col][last] : null;
      total += v || 0;
      legend += `<i style="background:${l.color}"></i>${l.label} <b>${fmt(v)}</b>`;
    }
    fig.querySelector(".legend").innerHTML = legend;
    // What the chart shows last, for tests and scripts: its latest point
    // (for the request rate, the sum of the outcomes) and that point's time.
    if (last >= 0) {
      fig.dataset.latest = c.total ? String(Math.round(total * 100) / 100) : String(hist.cols[c.lines[0].col][last]);
      fig.dataset.latestT = String(hist.t[last]);
    }
  }

  function spark(name) {
    const vals = hist.spark[name] || [];
    let max = 0;
    for (const v of vals) if (v !== null && v > max) max = v;
    const end = serverTime || (hist.t.length ? hist.t[hist.t.length - 1] : 0);
    return `<svg class="spark" viewBox="0 0 160 24" preserveAspectRatio="none"><path d="${pathOf(hist.t, vals, end, niceTop(max), 160, 24)}"/></svg>`;
  }

  const esc = (s) => String(s).replace(/[&<>"']/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[ch]);

  function duration(secs) {
    if (secs < 0) secs = 0;
    if (secs < 60) return Math.floor(secs) + "s";
    if (secs < 3600) return Math.floor(secs / 60) + "m" + String(Math.floor(secs % 60)).padStart(2, "0") + "s";
    if (secs < 86400) return Math.floor(secs / 3600) + "h" + String(Math.floor(secs % 3600 / 60)).padStart(2, "0") + "m";
    return Math.floor(secs / 86400) + "d" + Math.floor(secs % 86400 / 3600) + "h";
  }

  function bytes(n) {
    if (!n) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (n >= 100 ? Math.round(n) : Math.round(n * 10) / 10) + " " + units[i];
  }

  function drawTable() {
    const rows = status.replicas.map((r) => {
      const up = r.started_at ? duration(serverTime - Date.parse(r.started_at) / 1000) : "–";
      const why = r.last_restart ? ` <span class="why">${esc(r.last_restart)}</span>` : "";
      const cap = r.limit > 0 ? r.inflight + " / " + r.limit : String(r.inflight);
      const lat = r.p50_ms || r.p99_ms ? fmt(r.p50_ms) + " / " + fmt(r.p99_ms) : "–";
      const place = [r.gpu ? "GPU " + r.gpu : "", r.cpus ? "CPUs " + r.cpus : ""].filter(Boolean).join(", ") || "–";
      const err = r.error || r.health_error ? ` <span class="why">${esc(r.error || r.health_error)}</span>` : "";
      return `<tr data-replica="${esc(r.name)}" data-state="${esc(r.state)}"><td>${esc(r.name)}</td>` +
        `<td class="state-${esc(r.state)}">${esc(r.state)}${err}</td><td>${r.port}</td><td>${r.pid || "–"}</td><td>${up}</td>` +
        `<td>${r.restarts}${why}</td><td>${cap}</td><td>${fmt(r.rps)}</td><td>${lat}</td><td>${r.errors}</td>` +
        `<td>${r.pid ? fmt(r.cpu_percent, "%") : "–"}</td><td>${bytes(r.rss_bytes)}</td><td>${esc(place)}</td><td>${spark(r.name)}</td></tr>`;
    });
    $("#replicas tbody").innerHTML = rows.join("");
  }

  function drawHeader() {
    const s = status, ready = s.replicas.filter((r) => r.state === "ready").length;
    $("#name").textContent = s.name;
    document.title = "mattingctl: " + s.name;
    $("#summary").textContent = `port ${s.port} · pid ${s.pid} · up ${duration(serverTime - Date.parse(s.started_at) / 1000)} · ` +
      `${ready}/${s.desired} ready · ${s.policy} · queue ${s.queued}/${s.queue_max} · ` +
      `${s.conns} connections · ${s.rejected} rejected · ${s.failed} failed`;
    $("#summary").dataset.desired = String(s.desired);
  }

  function addEvents(events) {
    const list = $("#events");
    for (const e of events) {
      const li = document.createElement("li");
      li.dataset.kind = e.kind;
      li.dataset.replica = e.replica || "";
      li.dataset.seq = String(e.seq);
      const t = new Date(e.time);
      // Spaces between the parts, not only margins: a kind wider than
      // its column ("rolling restart") must not run into the replica, in
      // the page or in copied text.
      li.innerHTML = `<time datetime="${esc(e.time)}">${t.toLocaleTimeString()}</time> <span class="kind">${esc(e.kind)}</span> ` +
        `<span class="who">${esc(e.replica || "instance")}</span> <span class="detail">${esc(e.detail || "")}</span>`;
      list.prepend(li); // newest first
      after = e.seq;
    }
    while (list.children.length > 500) list.lastChild.remove();
  }

  function drawActions(a) {
    const box = $("#actions");
    box.hidden = !a.offered;
    // Asked for only when the page has no token that works.
    $("#token").hidden = !a.token_required || !!a.authorized;
    const busy = pending || !status;
    $("#scale-up").disabled = busy;
    $("#scale-down").disabled = busy || status.desired <= 1;
    $("#restart").disabled = busy;
  }

  async function act(path, body, what) {
    const result = $("#action-result");
    pending = true;
    drawActions(lastActions);
    result.className = "";
    result.textContent = what + "…";
    const headers = { "Content-Type": "application/json", "X-Mattingctl-Action": "1" };
    const typed = $("#token").hidden ? "" : $("#token").value;
    if (typed) sessionStorage.setItem(TOKEN, typed);
    if (token()) headers.Authorization = "Bearer " + token();
    try {
      const resp = await fetch(path, { method: "POST", headers, body: JSON.stringify(body), credentials: "same-origin" });
      const res = await resp.json().catch(() => ({}));
      if (!resp.ok) throw new Error(res.error || resp.status + " " + resp.statusText);
      if (res.error) throw new Error(res.error);
      if (res.errors && res.errors.length) throw new Error(res.errors.join("; "));
      result.textContent = path === "/api/scale" ? `scaled ${res.from} → ${res.to}` :
        `rolling restart done: ${(res.replaced || []).length} replaced`;
    } catch (err) {
      result.className = "error";
      result.textContent = what + " failed: " + err.message;
    } finally {
      pending = false;
      drawActions(lastActions);
    }
  }

  let lastActions = { offered: false };
  $("#scale-up").addEventListener("click", () => act("/api/scale", { replicas: status.desired + 1 }, "scaling up"));
  $("#scale-down").addEventListener("click", () => act("/api/scale", { replicas: status.desired - 1 }, "scaling down"));
  $("#restart").addEventListener("click", () => act("/api/restart", {}, "rolling restart"));

  async function poll() {
    try {
      const headers = token() ? { Authorization: "Bearer " + token() } : {};
      const resp = await fetch(`/api/dashboard?since=${since}&after=${after}`, { cache: "no-store", headers });
      if (!resp.ok) throw new Error(resp.statusText);
      const st = await resp.json();
      serverTime = st.time;
      status = st.status;
      lastActions = st.actions;
      append(st.series);
      addEvents(st.events);
      drawHeader();
      charts.forEach(drawChart);
      drawTable();
      drawActions(st.actions);
      $("#conn").hidden = true;
      document.body.dataset.updated = String(st.time);
    } catch (err) {
      $("#conn").hidden = false;
    }
    setTimeout(poll, 1000);
  }
  poll();
})();
