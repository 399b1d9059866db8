/* Shared by every admin page: the JSON API wrapper (sends the XSRF header, sends you to the login
   page on 401), small DOM helpers that never parse HTML, form error display, and the page header. */
"use strict";

const Admin = (() => {
  class ApiError extends Error {
    constructor(status, message, fields = {}, retryAfter = null) {
      super(message);
      this.status = status;
      this.fields = fields;
      this.retryAfter = retryAfter;
    }
  }

  function cookie(name) {
    const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
    return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
  }

  function loginUrl() {
    return "/admin?next=" + encodeURIComponent(location.pathname + location.search);
  }

  /** Call the admin API: api("PATCH", "/admin/api/clients/3", {rpm: 10}) → parsed JSON.
      Throws ApiError(status, message, fields). */
  async function api(method, path, body) {
    const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (method !== "GET" && method !== "HEAD") init.headers["X-XSRFToken"] = cookie("_xsrf");
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, "The gateway did not answer. Is it running?");
    }
    const isJson = (res.headers.get("Content-Type") || "").includes("json");
    const data = isJson ? await res.json() : null;
    if (res.ok) return data;
    const err = (data && data.error) || {};
    if (res.status === 401 && !path.endsWith("/login")) {
      location.assign(loginUrl());
    }
    throw new ApiError(res.status, err.message || res.statusText, err.fields || {}, res.headers.get("Retry-After"));
  }

  /** h("button", {class: "primary", onclick: fn}, "Save"): an element; strings become text nodes. */
  function h(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key in node && typeof value !== "string") node[key] = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** A labelled form field with its error slot: {name, label, type, value, hint, options, ...}. */
  function field(prefix, spec) {
    const id = `${prefix}-${spec.name}`;
    const described = [`${id}-error`, spec.hint ? `${id}-hint` : null].filter(Boolean).join(" ");
    let control;
    if (spec.type === "select") {
      control = h("select", { id, name: spec.name, "aria-describedby": described },
        spec.options.map(([value, text]) => h("option", { value }, text)));
    } else if (spec.type === "textarea") {
      control = h("textarea", { id, name: spec.name, rows: spec.rows || 4, placeholder: spec.placeholder,
        "aria-describedby": described });
    } else {
      control = h("input", { id, name: spec.name, type: spec.type || "text", placeholder: spec.placeholder,
        autocomplete: spec.autocomplete || "off", inputmode: spec.inputmode, min: spec.min, step: spec.step,
        required: spec.required, spellcheck: spec.spellcheck, "aria-describedby": described });
    }
    if (spec.value !== undefined && spec.value !== null) control.value = spec.value;
    const wrap = h("div", { class: "field" + (spec.wide ? " wide" : "") },
      h("label", { for: id }, spec.label), control);
    if (spec.hint) wrap.append(h("p", { class: "hint", id: `${id}-hint` }, spec.hint));
    wrap.append(h("p", { class: "error", id: `${id}-error`, hidden: true }));
    return wrap;
  }

  /** A limit's number input: budgets in dollars with cents, the others whole numbers. */
  function limitField(prefix, limit, unset, name = limit.field, hint = undefined) {
    const label = limit.label.charAt(0).toUpperCase() + limit.label.slice(1);
    return field(prefix, { name, label, type: "number", min: 0, step: limit.usd ? "any" : 1,
      inputmode: limit.usd ? "decimal" : "numeric", placeholder: unset, hint });
  }

  function clearErrors(form) {
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
    form.querySelectorAll(".error").forEach((el) => { el.hidden = true; el.textContent = ""; });
    const top = form.querySelector(".form-error");
    if (top) { top.hidden = true; top.textContent = ""; }
  }

  /** Show an ApiError on a form: each field's message next to it, the rest at the top. */
  function showErrors(form, err) {
    clearErrors(form);
    const rest = [];
    let first = null;
    for (const [name, message] of Object.entries(err.fields || {})) {
      const control = form.elements.namedItem(name);
      const slot = control && control.closest(".field") && control.closest(".field").querySelector(".error");
      if (slot) {
        control.setAttribute("aria-invalid", "true");
        slot.textContent = message;
        slot.hidden = false;
        first = first || control;
      } else {
        rest.push(`${name}: ${message}`);
      }
    }
    const top = form.querySelector(".form-error");
    if (top) {
      top.textContent = [err.message, ...rest].join(" ");
      top.hidden = false;
    }
    if (first) first.focus();
    else if (top) top.focus();
  }

  let toastTimer = null;
  /** A short message in the live region at the bottom right. */
  function notify(message, bad = false) {
    const box = document.getElementById("toast");
    if (!box) return;
    box.textContent = message;
    box.classList.toggle("bad", bad);
    box.classList.add("show");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => box.classList.remove("show"), bad ? 6000 : 3500);
  }

  /** Ask before doing something that cannot be undone; resolves true or false. */
  function confirmAction(title, message, confirmLabel) {
    return new Promise((resolve) => {
      const dialog = h("dialog", { class: "narrow", "aria-labelledby": "confirm-title", role: "alertdialog" });
      const done = (answer) => { dialog.close(); dialog.remove(); resolve(answer); };
      const no = h("button", { type: "button", onclick: () => done(false) }, "Cancel");
      dialog.append(h("div", { class: "body" },
        h("h2", { id: "confirm-title" }, title),
        h("p", {}, message),
        h("div", { class: "actions" },
          h("button", { type: "button", class: "danger solid", onclick: () => done(true) }, confirmLabel),
          no)));
      dialog.addEventListener("cancel", (e) => { e.preventDefault(); done(false); });
      document.body.append(dialog);
      dialog.showModal();
      no.focus();
    });
  }

  /** Copy text; falls back to selecting it where the Clipboard API is unavailable (plain HTTP). */
  async function copyText(text, input) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (e) {
      if (input) {
        input.focus();
        input.select();
        try { return document.execCommand("copy"); } catch (e2) { return false; }
      }
      return false;
    }
  }

  const numberFormat = new Intl.NumberFormat();
  const fmt = {
    int: (n) => (n === null || n === undefined ? "–" : numberFormat.format(n)),
    time: (ts) => (ts ? new Date(ts * 1000).toLocaleString() : "never"),
    ago(ts) {
      if (!ts) return "never";
      const s = Math.max(0, Date.now() / 1000 - ts);
      if (s < 60) return "just now";
      if (s < 3600) return `${Math.floor(s / 60)} min ago`;
      if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
      return new Date(ts * 1000).toLocaleDateString();
    },
    bytes(n) {
      const units = ["B", "KB", "MB", "GB", "TB"];
      let i = 0;
      while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
      return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
    },
    duration(s) {
      const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
      return d ? `${d} d ${hh} h` : hh ? `${hh} h ${m} min` : `${m} min ${Math.floor(s % 60)} s`;
    },
  };

  /** Wire the header (who is logged in, log out) and return /admin/api/meta for the page. */
  async function start() {
    const meta = await api("GET", "/admin/api/meta");
    const who = document.getElementById("who");
    if (who) who.textContent = meta.username;
    const out = document.getElementById("logout");
    if (out) {
      out.addEventListener("click", async () => {
        try { await api("POST", "/admin/api/logout"); } finally { location.assign("/admin"); }
      });
    }
    return meta;
  }

  /** Close a dialog when its element with data-close is pressed. */
  function closers(dialog) {
    dialog.querySelectorAll("[data-close]").forEach((b) => b.addEventListener("click", () => dialog.close()));
  }

  /** The Save and Delete buttons of an editor dialog over /admin/api/{collection}: POST a new item or
   *  PATCH the one being edited (``editing()``), then close and ``reload()``; errors go next to their
   *  fields. ``noun`` and ``deleteHint`` word the delete confirmation. */
  function bindEditor({ collection, form, dialog, save, remove, editing, body, reload, noun, deleteHint, key = "name" }) {
    const url = (item) => `/admin/api/${collection}/${encodeURIComponent(item[key])}`;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      save.disabled = true;
      try {
        const item = editing();
        const saved = item ? await api("PATCH", url(item), body()) : await api("POST", `/admin/api/${collection}`, body());
        dialog.close();
        notify(`Saved ${saved.name}; it is used from the next request on.`);
        await reload();
      } catch (err) {
        showErrors(form, err);
      } finally {
        save.disabled = false;
      }
    });
    remove.addEventListener("click", async () => {
      const item = editing();
      if (!(await confirmAction(`Delete ${item.name}?`, deleteHint, `Delete ${noun}`))) return;
      try {
        await api("DELETE", url(item));
        dialog.close();
        notify(`Deleted ${item.name}.`);
        await reload();
      } catch (err) {
        showErrors(form, err);
      }
    });
  }

  return { api, ApiError, h, field, limitField, clearErrors, showErrors, notify, confirmAction, copyText, fmt, start, closers, cookie,
    bindEditor };
})();
