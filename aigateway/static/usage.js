/* Usage page: daily usage for a date range (SVG chart, per client, per model, CSV export) and the
   request log with filters and keyset paging. Talks to /admin/api/usage and /admin/api/requests. */
"use strict";

(async () => {
  const { api, h, showErrors, clearErrors, fmt } = Admin;
  const $ = (id) => document.getElementById(id);
  await Admin.start();
  const rangeForm = $("range-form");
  const logForm = $("log-form");
  const SVG = "http://www.w3.org/2000/svg";
  let report = null;

  // -- date range and chart
  const isoDay = (d) => d.toISOString().slice(0, 10);
  const today = new Date();
  rangeForm.elements.to.value = isoDay(today);
  rangeForm.elements.from.value = isoDay(new Date(today.getTime() - 6 * 86400000));

  function daysBetween(first, last) {
    const out = [];
    for (let d = new Date(first + "T00:00:00Z"); isoDay(d) <= last && out.length < 1000; d = new Date(d.getTime() + 86400000)) {
      out.push(isoDay(d));
    }
    return out;
  }

  const metrics = {
    requests: ["Requests", (r) => r.requests],
    tokens: ["Tokens (in + out)", (r) => r.input_tokens + r.output_tokens],
    input_tokens: ["Input tokens", (r) => r.input_tokens],
    output_tokens: ["Output tokens", (r) => r.output_tokens],
  };

  async function loadUsage() {
    const query = new URLSearchParams({ from: rangeForm.elements.from.value, to: rangeForm.elements.to.value });
    try {
      report = await api("GET", `/admin/api/usage?${query}`);
      clearErrors(rangeForm);
    } catch (err) {
      showErrors(rangeForm, err);
      return;
    }
    $("csv-link").href = `/admin/api/usage.csv?${new URLSearchParams({ from: report.from, to: report.to })}`;
    drawChart();
    fillTable("by-client", report.clients, (r) => r.client_name, "Client");
    fillTable("by-model", report.models, (r) => r.model || "(none)", "Model");
    $("l-models").replaceChildren(...report.models.map((m) => h("option", { value: m.model })));
    const unpriced = report.unpriced || [];
    $("unpriced").hidden = !unpriced.length;
    $("unpriced").textContent = unpriced.length ? "Used without a price (charged $0; add one to the provider's "
      + "prices): " + unpriced.map((u) => `${u.provider}/${u.model} (${fmt.int(u.requests)} requests)`).join(", ") : "";
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceMax(n) {
    if (n <= 4) return 4;
    const step = 10 ** Math.floor(Math.log10(n));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= n) return m * step;
    return 10 * step;
  }

  function drawChart() {
    if (!report) return;
    const [label, value] = metrics[rangeForm.elements.metric.value];
    const byDay = Object.fromEntries(report.days.map((d) => [d.day, value(d)]));
    const days = daysBetween(report.from, report.to);
    const values = days.map((d) => byDay[d] || 0);
    const total = values.reduce((a, b) => a + b, 0);
    const chart = $("chart");
    const width = Math.max(300, chart.clientWidth || 800);
    const height = 240;
    const pad = { left: 56, right: 10, top: 10, bottom: 28 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const max = niceMax(Math.max(...values, 0));
    chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const desc = $("chart-desc");
    chart.replaceChildren(desc);
    for (let i = 0; i <= 4; i += 1) {
      const y = pad.top + plotH - (plotH * i) / 4;
      chart.append(svg("line", { class: i ? "grid-line" : "axis", x1: pad.left, x2: width - pad.right, y1: y, y2: y }));
      chart.append(svg("text", { x: pad.left - 6, y: y + 4, "text-anchor": "end" }, fmt.int(Math.round((max * i) / 4))));
    }
    const slot = plotW / days.length;
    const barW = Math.max(1, Math.min(48, slot * 0.7));
    const every = Math.ceil(days.length / Math.max(1, Math.floor(plotW / 70)));
    days.forEach((day, i) => {
      const v = values[i];
      const barH = max ? (plotH * v) / max : 0;
      const x = pad.left + slot * i + (slot - barW) / 2;
      const bar = svg("rect", { class: "bar", x, y: pad.top + plotH - barH, width: barW, height: Math.max(barH, v ? 1 : 0), rx: 2 });
      bar.append(svg("title", {}, `${day}: ${fmt.int(v)} ${label.toLowerCase()}`));
      chart.append(bar);
      if (i % every === 0) {
        chart.append(svg("text", { x: pad.left + slot * i + slot / 2, y: height - 8, "text-anchor": "middle" }, day.slice(5)));
      }
    });
    $("chart-title").textContent = `${label} per day`;
    const busiest = values.indexOf(Math.max(...values));
    desc.textContent = `${label} per day from ${report.from} to ${report.to}: ${fmt.int(total)} in total` +
      (total ? `; the busiest day was ${days[busiest]} with ${fmt.int(values[busiest])}.` : ".");
    const what = total === 1 ? label.toLowerCase().replace(/s$/, "") : label.toLowerCase();
    $("range-total").textContent = `${fmt.int(total)} ${what} in ${days.length} day${days.length === 1 ? "" : "s"}`;
  }

  function fillTable(id, rows, name, label) {
    const body = $(id).querySelector("tbody");
    const num = (l, v) => h("td", { class: "num", "data-label": l }, fmt.int(v));
    body.replaceChildren(...rows.map((r) => h("tr", {},
      h("td", { "data-label": label }, name(r)),
      num("Requests", r.requests), num("Errors", r.errors), num("Rejected", r.rejected),
      num("Input tokens", r.input_tokens), num("Output tokens", r.output_tokens),
      h("td", { class: "num", "data-label": "Cost (USD)" }, "$" + (r.cost_usd || 0).toFixed(4)))));
    if (!rows.length) {
      body.append(h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No usage in this range.")));
    }
  }

  rangeForm.addEventListener("submit", (e) => { e.preventDefault(); loadUsage(); });
  rangeForm.elements.metric.addEventListener("change", drawChart);
  let resizeTimer = null;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(drawChart, 150); });

  // -- request log: keyset paging (each page starts below the last id shown)
  const log = { filters: {}, before: null, stack: [], next: null };

  function logFilters() {
    const f = {};
    const el = logForm.elements;
    if (el.client.value) f.client = el.client.value;
    if (el.model.value.trim()) f.model = el.model.value.trim();
    if (el.status.value) f.status = el.status.value;
    for (const name of ["since", "until"]) {
      if (el[name].value) f[name] = String(new Date(el[name].value).getTime() / 1000);
    }
    return f;
  }

  async function loadLog() {
    const query = new URLSearchParams({ ...log.filters, limit: "50" });
    if (log.before) query.set("before", log.before);
    let page;
    try {
      page = await api("GET", `/admin/api/requests?${query}`);
      clearErrors(logForm);
    } catch (err) {
      showErrors(logForm, err);
      return;
    }
    log.next = page.next_before_id;
    const body = $("log").querySelector("tbody");
    body.replaceChildren(...page.requests.map(logRow));
    $("log-empty").hidden = page.requests.length > 0;
    $("log-older").disabled = !log.next;
    $("log-newer").disabled = !log.stack.length;
    $("log-newest").disabled = !log.before;
    $("log-page").textContent = page.requests.length
      ? `Page ${log.stack.length + 1}: ${page.requests.length} request${page.requests.length === 1 ? "" : "s"}, newest first`
      : "";
  }

  function logRow(r) {
    const cell = (label, ...content) => h("td", { "data-label": label }, ...content);
    const num = (label, ...content) => h("td", { "data-label": label, class: "num" }, ...content);
    const statusClass = r.status >= 500 ? "status-5xx" : r.status >= 400 ? "status-4xx" : "";
    const tokens = `${fmt.int(r.input_tokens)} / ${fmt.int(r.output_tokens)}${r.estimated ? " (est.)" : ""}`;
    return h("tr", {},
      cell("Time", new Date(r.ts * 1000).toLocaleString()),
      cell("Client", r.client_name || h("span", { class: "muted" }, "unknown key")),
      cell("Model", r.model || "–"),
      cell("API", r.inbound + (r.endpoint === "embeddings" ? " embeddings" : "") + (r.stream ? " (stream)" : "")),
      num("Status", h("span", { class: statusClass }, String(r.status))),
      num("Latency", `${fmt.int(Math.round(r.latency_ms))} ms`),
      num("Tokens in / out", tokens),
      cell("Error", r.error ? h("span", { title: r.error }, r.error.length > 80 ? r.error.slice(0, 80) + "…" : r.error) : ""),
    );
  }

  logForm.addEventListener("submit", (e) => {
    e.preventDefault();
    Object.assign(log, { filters: logFilters(), before: null, stack: [] });
    loadLog();
  });
  $("log-older").addEventListener("click", () => { log.stack.push(log.before); log.before = log.next; loadLog(); });
  $("log-newer").addEventListener("click", () => { log.before = log.stack.pop() || null; loadLog(); });
  $("log-newest").addEventListener("click", () => { Object.assign(log, { before: null, stack: [] }); loadLog(); });

  const clients = (await api("GET", "/admin/api/clients")).clients;
  logForm.elements.client.append(...clients.map((c) => h("option", { value: String(c.id) }, c.name)));
  await Promise.all([loadUsage(), loadLog()]);
})();
