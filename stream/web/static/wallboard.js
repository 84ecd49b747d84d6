/* ccpulse wallboard: renders the Redis snapshot pushed by /events.
 *
 * Why it is written this way:
 *  - Everything that came from an event (queue names, agent ids, numbers) is inserted with
 *    textContent / setAttribute / createElement, never as HTML, so a hostile name is text.
 *  - No libraries and no inline code: the page runs under `script-src 'self'` with no internet.
 *  - Tiles are built once per scope from a <template> and only their values change, so a
 *    push every second does not flicker and the window switch is instant (all windows are
 *    in every snapshot).
 *  - "Stale" is judged against the server's clock (skew measured on every push), so a
 *    wall display with a wrong clock neither cries wolf nor hides a stopped worker.
 */
"use strict";

(function () {
  const WINDOWS = ["15m", "1h", "today"];
  const SVG_NS = "http://www.w3.org/2000/svg";
  const ATRISK_MAX_ROWS = 12;
  const RECONNECT_MS = 5000;
  const DEFAULTS = {
    stale_after_s: 10, sl_amber: 0.8, sl_red: 0.7, waiting_amber: 5, waiting_red: 15,
    longest_wait_amber_s: 60, longest_wait_red_s: 180, aht_amber_s: 420, aht_red_s: 600,
    abandon_amber: 0.05, abandon_red: 0.10,
  };

  const params = new URLSearchParams(window.location.search);
  const token = params.get("token");
  let win = WINDOWS.indexOf(params.get("window")) >= 0 ? params.get("window") : "15m";
  // Optional per-team board: ?queues=billing,sales shows only those queues; &center=0 drops
  // the all-queues tile.
  const onlyQueues = params.get("queues") ? new Set(params.get("queues").split(",").map((q) => q.trim())) : null;
  const showCenter = params.get("center") !== "0";
  let doc = null;
  let cfg = Object.assign({}, DEFAULTS);
  let skewMs = 0;            // server clock − browser clock
  const tiles = new Map();   // scope → tile element

  const $ = (sel) => document.querySelector(sel);
  const els = {
    tiles: $('[data-role="tiles"]'),
    updated: $('[data-role="updated"]'),
    banner: $('[data-role="source-down"]'),
    auth: $('[data-role="auth-error"]'),
    conn: $('[data-role="connection"]'),
    atriskRows: $('[data-role="atrisk-rows"]'),
    atriskTable: $('[data-role="atrisk"] table'),
    atriskEmpty: $('[data-role="atrisk-empty"]'),
    atriskCount: $('[data-role="atrisk-count"]'),
    atriskMore: $('[data-role="atrisk-more"]'),
    template: document.getElementById("tile-template"),
  };

  function withToken(path) {
    return token ? path + "?token=" + encodeURIComponent(token) : path;
  }

  function num(v) {
    return typeof v === "number" && isFinite(v) ? v : null;
  }

  function obj(v) {
    return v !== null && typeof v === "object" && !Array.isArray(v) ? v : {};
  }

  // --- formatting (tests mirror these rules) ---------------------------------------------
  function pad2(n) { return n < 10 ? "0" + n : String(n); }

  function duration(v) {
    let s = Math.round(Math.abs(v));
    const sign = v < 0 && s > 0 ? "-" : "";
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    s = s % 60;
    return sign + (h ? h + ":" + pad2(m) + ":" + pad2(s) : m + ":" + pad2(s));
  }

  const FORMATS = {
    count: (v) => String(Math.round(v)),
    signed: (v) => (Math.round(v) > 0 ? "+" : "") + String(Math.round(v)),
    ratio: (v) => { const t = (v * 100).toFixed(1); return (t === "100.0" ? "100" : t) + "%"; },
    ratio0: (v) => Math.round(v * 100) + "%",
    duration: duration,
    score1: (v) => v.toFixed(1),
    score2: (v) => v.toFixed(2),
  };

  function format(kind, v) {
    const n = num(v);
    return n === null ? "—" : (FORMATS[kind] || FORMATS.count)(n);
  }

  // --- thresholds --------------------------------------------------------------------------
  const RANK = { ok: 0, amber: 1, red: 2 };

  function levelOf(field, v) {
    if (v === null) return null;
    const above = (amber, red) => (v >= red ? "red" : v >= amber ? "amber" : "ok");
    switch (field) {
      case "service_level": return v < cfg.sl_red ? "red" : v < cfg.sl_amber ? "amber" : "ok";
      case "waiting": return above(cfg.waiting_amber, cfg.waiting_red);
      case "longest_wait_s": return above(cfg.longest_wait_amber_s, cfg.longest_wait_red_s);
      case "aht_s": return above(cfg.aht_amber_s, cfg.aht_red_s);
      case "abandon_rate": return above(cfg.abandon_amber, cfg.abandon_red);
      default: return null;
    }
  }

  // --- tiles -------------------------------------------------------------------------------
  function scopeName(scope) {
    return scope === "center" ? "All queues" : scope.replace(/^queue:/, "");
  }

  function makeTile(scope) {
    const tile = els.template.content.firstElementChild.cloneNode(true);
    tile.setAttribute("data-scope", scope);
    tile.querySelector('[data-role="name"]').textContent = scopeName(scope);
    if (scope === "center") tile.classList.add("center");
    chartSizes.observe(tile.querySelector(".plot"));
    return tile;
  }

  function scopesOf(d) {
    const queues = (Array.isArray(d.queues) ? d.queues : [])
      .filter((q) => typeof q === "string" && (onlyQueues === null || onlyQueues.has(q)));
    const scopes = (showCenter ? ["center"] : []).concat(queues.map((q) => "queue:" + q));
    return Array.from(new Set(scopes));
  }

  function renderTile(tile, scope) {
    const kpi = obj(obj(obj(doc.kpi)[scope])[win]);
    const load = obj(obj(doc.load)[scope]);
    let worst = null;
    tile.querySelectorAll("[data-field]").forEach((el) => {
      const field = el.getAttribute("data-field");
      const v = num((el.getAttribute("data-source") === "load" ? load : kpi)[field]);
      el.setAttribute("data-value", v === null ? "" : String(v));
      el.textContent = format(el.getAttribute("data-format"), v);
      const level = levelOf(field, v);
      if (level) {
        el.setAttribute("data-state", level);
        if (worst === null || RANK[level] > RANK[worst]) worst = level;
      } else {
        el.removeAttribute("data-state");
      }
      const box = el.closest('[data-optional="true"]');
      if (box) box.hidden = v === null;
    });
    const quality = tile.querySelector('[data-role="quality"]');
    quality.hidden = !quality.querySelector('[data-optional="true"]:not([hidden])');
    const gap = num(load.staffing_gap);
    tile.querySelector(".gap").setAttribute("data-sign", gap === null ? "" : gap > 0 ? "short" : "ok");
    const state = worst || "idle";
    tile.setAttribute("data-state", state);
    tile.querySelector('[data-role="state-label"]').textContent =
      state === "red" ? "ALERT" : state === "amber" ? "WATCH" : state === "ok" ? "OK" : "";
  }

  function chartOf(tile) {
    drawChart(tile.querySelector('[data-role="chart"]'), obj(doc.intervals)[tile.getAttribute("data-scope")]);
  }

  // Charts are drawn in pixels of their box, so they are redrawn whenever the box changes
  // (tiles added or removed, window resized, dense mode) — not only when data arrives.
  const chartSizes = new ResizeObserver((entries) => {
    if (!doc) return;
    entries.forEach((e) => {
      const tile = e.target.closest("[data-scope]");
      if (tile && tile.isConnected) chartOf(tile);
    });
  });

  function renderTiles() {
    const scopes = scopesOf(doc);
    const wanted = new Set(scopes);
    for (const [scope, tile] of tiles) {
      if (!wanted.has(scope)) {
        chartSizes.unobserve(tile.querySelector(".plot"));
        tile.remove();
        tiles.delete(scope);
      }
    }
    scopes.forEach((scope, i) => {
      let tile = tiles.get(scope);
      if (!tile) { tile = makeTile(scope); tiles.set(scope, tile); }
      const here = els.tiles.children[i];
      if (here !== tile) els.tiles.insertBefore(tile, here || null); // the snapshot's queue order
      renderTile(tile, scope);
    });
    els.tiles.setAttribute("data-count", String(scopes.length));
    els.tiles.classList.toggle("dense", scopes.length > 4);
    tiles.forEach(chartOf); // after all tiles are placed, so each chart measures its final box
  }

  // --- chart: today's 15-minute intervals, offered as bars and AHT as a line ---------------
  function svg(name, attrs, text) {
    const el = document.createElementNS(SVG_NS, name);
    for (const k in attrs) el.setAttribute(k, String(attrs[k]));
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function drawChart(chart, rows) {
    while (chart.firstChild) chart.removeChild(chart.firstChild);
    const W = Math.max(200, Math.round(chart.clientWidth || 600));
    const H = Math.max(60, Math.round(chart.clientHeight || 120));
    chart.setAttribute("viewBox", "0 0 " + W + " " + H);
    const pts = (Array.isArray(rows) ? rows : [])
      .map((r) => ({ r: obj(r), t: Date.parse(obj(r).start) }))
      .filter((p) => isFinite(p.t) && typeof p.r.start === "string")
      .sort((a, b) => a.t - b.t);
    chart.setAttribute("data-points", String(pts.length));
    if (!pts.length) {
      chart.appendChild(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "chart-empty" },
        "no intervals yet today"));
      return;
    }
    const top = 24, bottom = 18, left = 2, right = 2;
    const plotH = H - top - bottom, plotW = W - left - right;
    const t0 = pts[0].t;
    const slots = Math.min(96, Math.max(12, Math.round((pts[pts.length - 1].t - t0) / 900000) + 1));
    const bw = plotW / slots;
    const maxOff = Math.max(1, ...pts.map((p) => num(p.r.offered) || 0));
    const ahts = pts.map((p) => num(p.r.aht_s)).filter((v) => v !== null);
    const maxAht = Math.max(1, ...ahts);
    chart.appendChild(svg("line", { x1: left, y1: top + plotH, x2: W - right, y2: top + plotH, class: "axis" }));
    const line = [];
    pts.forEach((p) => {
      const i = Math.round((p.t - t0) / 900000);
      if (i < 0 || i >= slots) return;
      const x = left + i * bw;
      const off = num(p.r.offered) || 0;
      const h = (off / maxOff) * plotH;
      const bar = svg("rect", { x: x + bw * 0.12, y: top + plotH - h, width: Math.max(1, bw * 0.76), height: h, class: "bar" });
      bar.appendChild(svg("title", {}, p.r.start.slice(11, 16) + "  offered " + format("count", off) +
        "  AHT " + format("duration", num(p.r.aht_s))));
      chart.appendChild(bar);
      const aht = num(p.r.aht_s);
      if (aht !== null) line.push([x + bw / 2, top + plotH - (aht / maxAht) * plotH]);
    });
    if (line.length > 1) {
      chart.appendChild(svg("polyline", { points: line.map((q) => q[0].toFixed(1) + "," + q[1].toFixed(1)).join(" "), class: "line" }));
    }
    line.forEach((q) => chart.appendChild(svg("circle", { cx: q[0].toFixed(1), cy: q[1].toFixed(1), r: 2.5, class: "dot" })));
    // Hour labels under the bars of full hours, thinned to fit the width.
    const hours = Math.max(1, Math.ceil((slots / 4) / Math.max(1, Math.floor(W / 60))));
    pts.forEach((p) => {
      const hhmm = p.r.start.slice(11, 16);
      const i = Math.round((p.t - t0) / 900000);
      if (hhmm.slice(3) !== "00" || Number(hhmm.slice(0, 2)) % hours !== 0) return;
      const x = Math.min(W - right - 16, Math.max(left + 16, left + i * bw + bw / 2));
      chart.appendChild(svg("text", { x: x.toFixed(1), y: H - 3, "text-anchor": "middle", class: "tick" }, hhmm));
    });
    chart.appendChild(svg("text", { x: left, y: 12, class: "tick bar-tick" }, "max " + format("count", maxOff)));
    if (ahts.length) {
      chart.appendChild(svg("text", { x: W - right, y: 12, "text-anchor": "end", class: "tick line-tick" },
        "AHT max " + format("duration", maxAht)));
    }
  }

  // --- at-risk contacts ----------------------------------------------------------------------
  function serverNow() { return Date.now() + skewMs; }

  function renderAtRisk() {
    const list = Array.isArray(obj(doc.atrisk).center) ? obj(doc.atrisk).center : [];
    const rows = list.map(obj)
      .filter((r) => num(r.score) !== null && (onlyQueues === null || onlyQueues.has(r.queue)))
      .sort((a, b) => a.score - b.score);
    while (els.atriskRows.firstChild) els.atriskRows.removeChild(els.atriskRows.firstChild);
    rows.slice(0, ATRISK_MAX_ROWS).forEach((r) => {
      const tr = document.createElement("tr");
      tr.setAttribute("data-role", "atrisk-row");
      const cell = (field, text, cls) => {
        const td = document.createElement("td");
        td.setAttribute("data-field", field);
        if (cls) td.className = cls;
        td.textContent = text;
        tr.appendChild(td);
        return td;
      };
      cell("queue", typeof r.queue === "string" ? r.queue : "—").setAttribute("title", String(r.queue));
      cell("agent_id", typeof r.agent_id === "string" ? r.agent_id : "—").setAttribute("title", String(r.agent_id));
      cell("score", format("score2", r.score), "num score").setAttribute("data-value", String(r.score));
      const since = Date.parse(r.since);
      const td = cell("since", "—", "num");
      if (isFinite(since)) td.setAttribute("data-since", String(since));
      els.atriskRows.appendChild(tr);
    });
    els.atriskCount.textContent = String(rows.length);
    els.atriskCount.setAttribute("data-zero", rows.length ? "false" : "true");
    els.atriskTable.hidden = rows.length === 0;
    els.atriskEmpty.hidden = rows.length > 0;
    els.atriskMore.hidden = rows.length <= ATRISK_MAX_ROWS;
    els.atriskMore.textContent = "+" + (rows.length - ATRISK_MAX_ROWS) + " more";
    tickAtRisk();
  }

  function tickAtRisk() {
    const now = serverNow();
    els.atriskRows.querySelectorAll("td[data-since]").forEach((td) => {
      td.textContent = duration(Math.max(0, (now - Number(td.getAttribute("data-since"))) / 1000));
    });
  }

  // --- last update and stale state ---------------------------------------------------------
  function clockText(iso, tz) {
    const d = new Date(iso);
    try {
      return new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit",
        hour12: false, timeZone: tz || undefined }).format(d);
    } catch (e) {
      return pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
    }
  }

  function tick() {
    const updated = doc && typeof doc.updated_at === "string" ? Date.parse(doc.updated_at) : NaN;
    const body = document.body;
    body.classList.toggle("nodata", !isFinite(updated));
    if (!isFinite(updated)) {
      body.classList.remove("stale");
      els.updated.textContent = doc ? "waiting for data" : "connecting…";
      els.updated.setAttribute("data-value", "");
    } else {
      const age = Math.max(0, (serverNow() - updated) / 1000);
      const stale = age > (num(cfg.stale_after_s) || DEFAULTS.stale_after_s);
      body.classList.toggle("stale", stale);
      els.updated.setAttribute("data-value", doc.updated_at);
      els.updated.textContent = "Updated " + clockText(doc.updated_at, doc.timezone) +
        (stale ? " · " + duration(age) + " ago" : "");
    }
    tickAtRisk();
  }

  // --- data in -----------------------------------------------------------------------------
  function setSourceDown(down) {
    document.body.classList.toggle("source-down", down);
    els.banner.hidden = !down;
  }

  function apply(payload) {
    if (payload === null || typeof payload !== "object" || Array.isArray(payload)) return;
    if (payload.wallboard && typeof payload.wallboard === "object") {
      cfg = Object.assign({}, DEFAULTS, payload.wallboard);
    }
    const st = Date.parse(payload.server_time);
    if (isFinite(st)) skewMs = st - Date.now();
    if (payload.source === "down" || payload.source === "up") setSourceDown(payload.source === "down");
    doc = payload;
    renderTiles();
    renderAtRisk();
    tick();
  }

  function parse(text) {
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  let source = null;
  function connect() {
    if (source) source.close();
    source = new EventSource(withToken("/events"));
    source.addEventListener("open", () => { els.conn.hidden = true; });
    source.addEventListener("snapshot", (ev) => apply(parse(ev.data)));
    source.addEventListener("status", (ev) => {
      const st = obj(parse(ev.data));
      if (st.redis === "down" || st.redis === "up") setSourceDown(st.redis === "down");
    });
    source.addEventListener("error", () => {
      els.conn.hidden = false;
      // EventSource retries by itself unless the server answered with an error status.
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, RECONNECT_MS);
    });
  }

  function firstPaint() {
    fetch(withToken("/api/snapshot"), { cache: "no-store", credentials: "same-origin" })
      .then((r) => {
        if (r.status === 401) { els.auth.hidden = false; return null; }
        return r.ok ? r.json() : null;
      })
      .then((payload) => { if (payload && doc === null) apply(payload); })
      .catch(() => { els.conn.hidden = false; });
  }

  function selectWindow(w) {
    if (WINDOWS.indexOf(w) < 0) return;
    win = w;
    document.querySelectorAll("[data-window]").forEach((b) => {
      b.setAttribute("aria-pressed", b.getAttribute("data-window") === w ? "true" : "false");
    });
    const q = new URLSearchParams(window.location.search);
    q.set("window", w);
    history.replaceState(null, "", window.location.pathname + "?" + q.toString());
    if (doc) renderTiles();
  }

  document.querySelectorAll("[data-window]").forEach((b) => {
    b.addEventListener("click", () => selectWindow(b.getAttribute("data-window")));
  });
  selectWindow(win);
  firstPaint();
  connect();
  setInterval(tick, 1000);
})();
