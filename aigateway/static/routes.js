/* Routes page: model names served by an ordered list of provider targets, with their fallback
   statuses and retries. Talks to /admin/api/routes. */
"use strict";

(async () => {
  const { api, h, field, clearErrors, fmt } = Admin;
  const $ = (id) => document.getElementById(id);
  const meta = await Admin.start();
  const dialog = $("route-dialog");
  const form = $("route-form");
  Admin.closers(dialog);
  let editing = null;

  $("route-fields").append(
    field("r", { name: "name", label: "Model name", required: true, placeholder: "e.g. smart",
      hint: "What clients send as the model. It cannot change later." }),
    field("r", { name: "targets", label: "Targets", type: "textarea", wide: true, rows: 4,
      placeholder: "One per line: provider model (the model may be left out)",
      hint: `In order of preference. Providers: ${meta.providers.join(", ")}.` }),
    field("r", { name: "fallback_on", label: "Falls back on", placeholder: "429, 500, 502, 503, 504, 529",
      hint: "HTTP statuses that move on to the next target; empty: the default. No answer at all always does." }),
    field("r", { name: "retries", label: "Retries", type: "number", min: 0, step: 1, inputmode: "numeric",
      hint: "Extra attempts on the same target first, honouring Retry-After." }),
    field("r", { name: "retry_max_seconds", label: "Retry budget (seconds)", type: "number", min: 0, step: 1,
      inputmode: "numeric", hint: "All retries of one request, waits included." }),
  );

  async function load() {
    const routes = (await api("GET", "/admin/api/routes")).routes;
    $("routes-table").querySelector("tbody").replaceChildren(...routes.map(row));
    $("routes-empty").hidden = routes.length > 0;
  }

  function row(r) {
    const cell = (label, ...content) => h("td", { "data-label": label }, ...content);
    return h("tr", { dataset: { name: r.name } },
      cell("Model name", h("strong", {}, r.name)),
      cell("Targets", h("ol", { class: "targets" }, ...r.targets.map((t) =>
        h("li", {}, h("code", {}, t.provider), t.model ? ` ${t.model}` : "")))),
      cell("Falls back on", r.fallback_on.join(", ") || h("span", { class: "muted" }, "no answer only")),
      h("td", { "data-label": "Retries", class: "num" }, String(r.retries)),
      h("td", { "data-label": "Clients", class: "num" }, fmt.int(r.clients)),
      h("td", { class: "actions-cell" },
        h("button", { type: "button", class: "small", "aria-label": `Edit ${r.name}`, onclick: () => openEditor(r) },
          "Edit")),
    );
  }

  function openEditor(route) {
    editing = route;
    form.reset();
    clearErrors(form);
    $("route-title").textContent = route ? `Edit ${route.name}` : "Add route";
    $("route-save").textContent = route ? "Save changes" : "Add route";
    $("route-delete").hidden = !route;
    form.elements.name.readOnly = Boolean(route);
    if (route) {
      form.elements.name.value = route.name;
      form.elements.targets.value = route.targets.map((t) => `${t.provider} ${t.model}`.trim()).join("\n");
      form.elements.fallback_on.value = route.fallback_on.join(", ");
      form.elements.retries.value = route.retries;
      form.elements.retry_max_seconds.value = route.retry_max_seconds;
    }
    dialog.showModal();
    (route ? form.elements.targets : form.elements.name).focus();
  }

  function formBody() {
    const targets = form.elements.targets.value.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
      const [provider, ...model] = line.split(/\s+/);
      return { provider, model: model.join(" ") };
    });
    const body = { targets };
    const statuses = form.elements.fallback_on.value.trim();
    if (statuses) body.fallback_on = statuses.split(/[\s,]+/).filter(Boolean).map(Number);
    if (form.elements.retries.value !== "") body.retries = Number(form.elements.retries.value);
    if (form.elements.retry_max_seconds.value !== "") body.retry_max_seconds = Number(form.elements.retry_max_seconds.value);
    if (!editing) body.name = form.elements.name.value.trim();
    return body;
  }

  Admin.bindEditor({ collection: "routes", form, dialog, save: $("route-save"), remove: $("route-delete"),
    editing: () => editing, body: formBody, reload: load, noun: "route",
    deleteHint: "It is removed from config.yaml. Only a route no client may use can be deleted." });

  $("new-route").addEventListener("click", () => openEditor(null));
  await load();
})();
