// Live dashboard: one WebSocket to /admin/ws. The server sends frames that are JSON lists of
// {type, payload} messages: a "snapshot" first (and again whenever it resyncs us), then
// coalesced deltas. On close we reconnect with exponential backoff and start over from the
// next snapshot, so a server restart needs no reload.
"use strict";

(function () {
  const LOG_MAX = 200; // rows kept in the request log
  const MINUTES = 60;
  const BACKOFF_MIN = 500;
  const BACKOFF_MAX = 10000;
  const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
    "#ff9da7", "#9c755f", "#bab0ac"];

  const state = {
    series: new Map(), // "minute|model" -> {minute, model, requests, input_tokens, output_tokens}
    active: new Map(), // id -> entry
    clockSkew: 0, // server time - local time, seconds
    seriesMinutes: MINUTES,
  };
  const colors = new Map();
  let socket = null;
  let backoff = BACKOFF_MIN;
  let retryTimer = null;
  let drawPending = false;

  const $ = (id) => document.getElementById(id);
  const nowServer = () => Date.now() / 1000 + state.clockSkew;
  const fmtInt = (n) => (n === null || n === undefined ? "–" : Math.round(n).toLocaleString("en-US"));
  const fmtMs = (n) => (n === null || n === undefined ? "–" : Math.round(n).toLocaleString("en-US"));
  const fmtTime = (ts) => new Date(ts * 1000).toLocaleTimeString([], { hour12: false });

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  // -- connection
  function setConn(stateName, text) {
    const c = $("conn");
    c.dataset.state = stateName;
    c.textContent = text;
  }

  function connect() {
    retryTimer = null;
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/admin/ws";
    let opened = false;
    setConn("connecting", "connecting…");
    socket = new WebSocket(url);
    socket.onopen = () => {
      opened = true;
      backoff = BACKOFF_MIN;
      setConn("live", "live");
    };
    socket.onmessage = (ev) => {
      let messages;
      try {
        messages = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      for (const m of Array.isArray(messages) ? messages : [messages]) handle(m);
    };
    socket.onclose = () => {
      socket = null;
      const delay = backoff;
      backoff = Math.min(backoff * 2, BACKOFF_MAX);
      setConn("disconnected", "disconnected — retrying in " + Math.ceil(delay / 1000) + " s");
      if (!opened) checkLoggedIn();
      retryTimer = setTimeout(connect, delay);
    };
  }

  // An upgrade refused for want of a session looks like any failed connection: ask plainly.
  function checkLoggedIn() {
    fetch("/admin/ws", { credentials: "same-origin", cache: "no-store" })
      .then((r) => {
        if (r.status === 401 || r.status === 403) location.href = "/admin";
      })
      .catch(() => {}); // server down: keep retrying
  }

  // -- messages
  function handle(msg) {
    const p = msg.payload;
    switch (msg.type) {
      case "snapshot":
        return applySnapshot(p);
      case "requests/add":
        return addRows(p);
      case "stats/update":
        return setStats(p);
      case "active/add":
        for (const a of p) state.active.set(a.id, a);
        return renderActive();
      case "active/remove":
        for (const id of p) state.active.delete(id);
        return renderActive();
      case "series/update":
        for (const b of p) state.series.set(b.minute + "|" + b.model, b);
        return scheduleDraw();
    }
  }

  function applySnapshot(s) {
    state.clockSkew = s.now - Date.now() / 1000;
    state.seriesMinutes = s.series_minutes || MINUTES;
    document.body.dataset.snapshots = String(Number(document.body.dataset.snapshots || 0) + 1);
    setStats(s.stats);
    $("log").replaceChildren();
    addRows(s.requests);
    state.active = new Map(s.active.map((a) => [a.id, a]));
    renderActive();
    state.series = new Map(s.series.map((b) => [b.minute + "|" + b.model, b]));
    scheduleDraw();
  }

  function setStats(st) {
    for (const [key, value] of Object.entries(st)) {
      const node = $("s-" + key);
      if (!node) continue;
      if (key === "day") node.textContent = value;
      else if (key === "error_rate") node.textContent = (value * 100).toFixed(1) + "%";
      else if (key.startsWith("cost_usd")) node.textContent = "$" + value.toFixed(value < 10 ? 4 : 2);
      else if (key.endsWith("_ms")) node.textContent = fmtMs(value);
      else node.textContent = fmtInt(value);
    }
  }

  function addRows(rows) {
    const body = $("log");
    for (const r of rows) {
      const tr = el("tr");
      tr.dataset.client = r.client;
      tr.dataset.status = r.status;
      tr.append(
        el("td", fmtTime(r.ts)),
        el("td", r.client || "(no key)"),
        el("td", (r.model || "–") + (r.endpoint === "embeddings" ? " (embeddings)" : "")),
        el("td", r.status, "status-" + String(r.status)[0] + "xx"),
        el("td", fmtInt(r.input_tokens) + (r.estimated ? "~" : ""), "num"),
        el("td", fmtInt(r.output_tokens) + (r.estimated ? "~" : ""), "num"),
        el("td", fmtMs(r.latency_ms) + " ms", "num"),
        el("td", r.ttft_ms === null ? "–" : fmtMs(r.ttft_ms) + " ms", "num"),
        el("td", r.stream ? "yes" : ""),
      );
      if (r.error) tr.title = r.error;
      body.prepend(tr);
    }
    while (body.children.length > LOG_MAX) body.lastElementChild.remove();
  }

  function renderActive() {
    const body = $("active");
    const entries = [...state.active.values()].sort((a, b) => a.started - b.started);
    $("active-count").textContent = String(entries.length);
    $("active-empty").hidden = entries.length > 0;
    body.replaceChildren(
      ...entries.map((a) => {
        const tr = el("tr");
        tr.dataset.started = a.started;
        tr.append(el("td", fmtTime(a.started)), el("td", a.client || "…"), el("td", a.model || "…"),
          el("td", a.inbound), el("td", a.stream ? "yes" : ""), el("td", elapsed(a.started), "num elapsed"));
        return tr;
      }),
    );
  }

  function elapsed(started) {
    return Math.max(0, nowServer() - started).toFixed(1) + " s";
  }

  setInterval(() => {
    for (const td of document.querySelectorAll("#active td.elapsed")) {
      td.textContent = elapsed(Number(td.parentElement.dataset.started));
    }
  }, 1000);

  // -- chart: stacked bars per minute, one colour per model
  function scheduleDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => {
      drawPending = false;
      draw();
    });
  }

  function colorOf(model) {
    if (!colors.has(model)) colors.set(model, PALETTE[colors.size % PALETTE.length]);
    return colors.get(model);
  }

  function draw() {
    const last = Math.floor(nowServer() / 60);
    const first = last - state.seriesMinutes + 1;
    const models = new Map(); // model -> {requests, tokens} over the hour
    const cells = [];
    for (const [key, b] of state.series) {
      if (b.minute < first) {
        state.series.delete(key);
        continue;
      }
      const tokens = b.input_tokens + b.output_tokens;
      const m = models.get(b.model) || { requests: 0, tokens: 0 };
      m.requests += b.requests;
      m.tokens += tokens;
      models.set(b.model, m);
      cells.push({ minute: b.minute, model: b.model, requests: b.requests, tokens });
    }
    const names = [...models.keys()].sort();
    names.forEach(colorOf);
    drawChart($("chart-requests"), cells, names, first, "requests");
    drawChart($("chart-tokens"), cells, names, first, "tokens");
    const legend = $("legend");
    legend.replaceChildren(
      ...names.map((name) => {
        const li = el("li");
        const sw = el("span", "", "swatch");
        sw.style.background = colorOf(name);
        const m = models.get(name);
        li.append(sw, el("span", name, "model"), el("span", fmtInt(m.requests) + " req · " + fmtInt(m.tokens) + " tok", "muted"));
        return li;
      }),
    );
  }

  // A whole-number grid step (1, 2 or 5 times a power of ten) giving about four lines up to peak.
  function niceStep(peak) {
    const raw = Math.max(1, peak / 4);
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const f of [1, 2, 5]) if (f * p >= raw) return f * p;
    return 10 * p;
  }

  function drawChart(canvas, cells, names, first, field) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 600;
    const h = canvas.clientHeight || 180;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const n = state.seriesMinutes;
    const stacks = Array.from({ length: n }, () => new Map());
    let total = 0;
    for (const c of cells) {
      const i = c.minute - first;
      if (i < 0 || i >= n) continue;
      stacks[i].set(c.model, (stacks[i].get(c.model) || 0) + c[field]);
      total += c[field];
    }
    canvas.dataset.total = String(total);
    let peak = 0;
    for (const s of stacks) {
      let sum = 0;
      for (const v of s.values()) sum += v;
      peak = Math.max(peak, sum);
    }
    const step = niceStep(peak);
    const top = step * Math.max(1, Math.ceil(peak / step));
    const left = 48, right = 8, upper = 8, lower = 20;
    const plotW = w - left - right, plotH = h - upper - lower;
    const style = getComputedStyle(document.body);
    const ink = style.getPropertyValue("--muted").trim() || "#888";
    const grid = style.getPropertyValue("--line").trim() || "#ddd";
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = ink;
    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let v = 0; v <= top; v += step) {
      const y = upper + plotH - (plotH * v) / top;
      ctx.beginPath();
      ctx.moveTo(left, Math.round(y) + 0.5);
      ctx.lineTo(w - right, Math.round(y) + 0.5);
      ctx.stroke();
      ctx.fillText(fmtInt(v), left - 6, y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const ago of [60, 45, 30, 15, 0]) {
      if (ago >= n) continue;
      const x = left + ((n - 1 - ago) + 0.5) * (plotW / n);
      ctx.fillText(ago ? "-" + ago + "m" : "now", x, h - lower + 4);
    }
    const barW = Math.max(1, plotW / n - 2);
    stacks.forEach((s, i) => {
      let y = upper + plotH;
      const x = left + i * (plotW / n) + 1;
      for (const name of names) {
        const v = s.get(name);
        if (!v) continue;
        const bh = (v / top) * plotH;
        ctx.fillStyle = colorOf(name);
        ctx.fillRect(x, y - bh, barW, bh);
        y -= bh;
      }
    });
  }

  window.addEventListener("resize", scheduleDraw);
  setInterval(scheduleDraw, 15000); // the hour slides even when nothing happens

  if (typeof Admin !== "undefined") Admin.start().catch(() => {}); // the header: who is logged in, log out
  connect();
})();
