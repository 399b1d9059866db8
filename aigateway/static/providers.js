/* Providers page: add, edit, test and delete providers of every type. Keys are write-only: the API
   only ever says whether one is set. Talks to /admin/api/providers. */
"use strict";

(async () => {
  const { api, h, field, showErrors, clearErrors, fmt } = Admin;
  const $ = (id) => document.getElementById(id);
  const meta = await Admin.start();
  const types = meta.provider_types;
  const dialog = $("provider-dialog");
  const form = $("provider-form");
  Admin.closers(dialog);
  let providers = [];
  let editing = null;

  const typeLabels = {
    openai: "OpenAI", mistral: "Mistral", ollama: "Ollama", lmstudio: "LM Studio",
    openai_compatible: "OpenAI-compatible", anthropic: "Anthropic", gemini: "Google Gemini",
  };
  $("provider-fields").append(
    field("p", { name: "name", label: "Name", required: true, hint: "Clients refer to it by this name; it cannot change later." }),
    field("p", { name: "type", label: "Type", type: "select",
      options: Object.keys(types).map((t) => [t, typeLabels[t] || t]) }),
    field("p", { name: "api", label: "API", type: "select",
      options: [["chat", "Chat completions"], ["responses", "Responses API"]],
      hint: "What the upstream is spoken to with (OpenAI-compatible types only)." }),
    field("p", { name: "api_key", label: "API key", type: "password", autocomplete: "new-password", spellcheck: "false" }),
    field("p", { name: "base_url", label: "Base URL", type: "url", spellcheck: "false" }),
    field("p", { name: "default_model", label: "Default model", placeholder: "e.g. gpt-4o",
      hint: "Used when neither the request nor the client names a model." }),
    field("p", { name: "timeout_seconds", label: "Timeout (seconds)", type: "number", min: 1, step: 1,
      inputmode: "numeric", hint: "Whole request; for streams, the longest silence." }),
    field("p", { name: "prices", label: "Prices (USD per million tokens)", type: "textarea", wide: true, rows: 3,
      placeholder: "One per line: model input output [cached_input] [cache_write]",
      hint: "Override or add to the shipped prices for this provider. Empty: the shipped table." }),
    field("p", { name: "allowed_models", label: "Allowed models", type: "textarea", wide: true, rows: 3,
      placeholder: "One per line. Empty: any model the upstream lists.",
      hint: "If set, the only models clients may use (and what /v1/models lists)." }),
  );

  function describeType() {
    const kind = types[form.elements.type.value];
    const api = form.elements.api;
    api.closest(".field").hidden = kind.format !== "openai";
    if (kind.format !== "openai") api.value = "chat";
    const input = form.elements.base_url;
    input.placeholder = kind.base_url || "required, e.g. http://localhost:8000/v1";
    const hint = kind.needs_base_url ? "Required for this type (OpenAI-compatible URLs end in /v1)."
      : `Empty: the official endpoint ${kind.base_url}`;
    setHint(input, hint);
  }

  function setHint(input, text) {
    const wrap = input.closest(".field");
    let hint = wrap.querySelector(".hint");
    if (!hint) {
      hint = h("p", { class: "hint", id: `${input.id}-hint` });
      wrap.querySelector(".error").before(hint);
      input.setAttribute("aria-describedby", `${input.id}-hint ${input.id}-error`);
    }
    hint.textContent = text;
  }
  form.elements.type.addEventListener("change", describeType);

  // -- table
  async function load() {
    providers = (await api("GET", "/admin/api/providers")).providers;
    const body = $("providers-table").querySelector("tbody");
    body.replaceChildren(...providers.map(row));
    $("providers-empty").hidden = providers.length > 0;
  }

  function row(p) {
    const cell = (label, ...content) => h("td", { "data-label": label }, ...content);
    const models = p.allowed_models.length ? p.allowed_models.join(", ") : h("span", { class: "muted" }, "any");
    return h("tr", { dataset: { name: p.name } },
      cell("Name", h("strong", {}, p.name)),
      cell("Type", typeLabels[p.type] || p.type),
      cell("Endpoint", h("code", {}, p.endpoint)),
      cell("Default model", p.default_model || h("span", { class: "muted" }, "none")),
      cell("Allowed models", models),
      h("td", { "data-label": "Timeout", class: "num" }, `${p.timeout_seconds} s`),
      cell("API keys", p.api_key_set ? keyList(p.keys) : h("span", { class: "badge off" }, "not set")),
      h("td", { "data-label": "Clients", class: "num" }, fmt.int(p.clients)),
      h("td", { class: "actions-cell" },
        h("button", { type: "button", class: "small", "aria-label": `Test ${p.name}`,
          onclick: (e) => runTest(p.name, {}, $("test-result"), e.currentTarget) }, "Test"),
        " ",
        h("button", { type: "button", class: "small", "aria-label": `Edit ${p.name}`, onclick: () => openEditor(p) }, "Edit")),
    );
  }

  // Each key of the pool: label, last characters, weight, state (never the key itself).
  function keyList(keys) {
    return h("ul", { class: "keys" }, ...keys.map((k) => {
      const name = [k.label, k.tail ? `…${k.tail}` : ""].filter(Boolean).join(" ") || "key";
      const state = k.state === "ok" ? h("span", { class: "badge ok" }, "ok")
        : h("span", { class: "badge off", title: k.error || "" },
          `${k.state} until ${new Date(k.until * 1000).toLocaleTimeString()}`);
      return h("li", { dataset: { state: k.state } }, `${name} ×${k.weight} `, state,
        k.error ? h("span", { class: "muted key-error" }, ` ${k.error.slice(0, 120)}`) : "");
    }));
  }

  // -- test connection
  async function runTest(name, body, box, button) {
    box.hidden = false;
    box.className = "result";
    box.textContent = `Testing ${name}…`;
    if (button) button.disabled = true;
    try {
      const r = await api("POST", `/admin/api/providers/${encodeURIComponent(name)}/test`, body);
      if (r.ok) {
        box.className = "result ok";
        const shown = r.models.slice(0, 12).join(", ") + (r.models.length > 12 ? ", …" : "");
        box.textContent = `✓ ${name} answered in ${r.latency_ms} ms with ${r.models.length} models: ${shown || "(none)"}`;
      } else {
        box.className = "result bad";
        box.textContent = `✗ ${name} (${r.endpoint}): ${r.status} ${r.error}`;
      }
    } catch (err) {
      box.className = "result bad";
      box.textContent = `✗ ${err.message}`;
      if (err.fields && Object.keys(err.fields).length && box.id === "form-test-result") showErrors(form, err);
    } finally {
      if (button) button.disabled = false;
      box.scrollIntoView({ block: "nearest" });
    }
  }

  // -- editor
  function openEditor(provider) {
    editing = provider;
    form.reset();
    clearErrors(form);
    $("form-test-result").hidden = true;
    $("provider-title").textContent = provider ? `Edit ${provider.name}` : "Add provider";
    $("provider-save").textContent = provider ? "Save changes" : "Add provider";
    $("provider-delete").hidden = !provider;
    $("clear-key-field").hidden = !(provider && provider.api_key_set);
    form.elements.name.readOnly = Boolean(provider);
    if (provider) {
      form.elements.name.value = provider.name;
      form.elements.type.value = provider.type;
      form.elements.api.value = provider.api;
      form.elements.base_url.value = provider.base_url;
      form.elements.default_model.value = provider.default_model;
      form.elements.allowed_models.value = provider.allowed_models.join("\n");
      form.elements.prices.value = Object.entries(provider.prices).map(([model, p]) =>
        [model, p.input, p.output, p.cached_input ?? "", p.cache_write ?? ""].join(" ").trim()).join("\n");
      form.elements.timeout_seconds.value = provider.timeout_seconds;
    } else {
      form.elements.type.value = "openai_compatible";
      form.elements.api.value = "chat";
      form.elements.timeout_seconds.value = 120;
    }
    form.elements.api_key.placeholder = provider && provider.api_key_set
      ? "•••• set — leave empty to keep it" : "not set";
    describeType();
    dialog.showModal();
    (provider ? form.elements.type : form.elements.name).focus();
  }

  // "model input output [cached_input] [cache_write]" lines to the API's {model: {...}}; a line that
  // does not parse is sent as it is, so the server names the problem next to the field.
  function parsePrices(text) {
    const out = {};
    for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
      const [model, ...numbers] = line.split(/\s+/);
      const names = ["input", "output", "cached_input", "cache_write"];
      out[model] = Object.fromEntries(numbers.map((n, i) => [names[i] || `extra${i}`, Number.isNaN(Number(n)) ? n : Number(n)]));
    }
    return out;
  }

  function formBody() {
    const body = {
      type: form.elements.type.value,
      api: form.elements.api.value,
      base_url: form.elements.base_url.value.trim(),
      default_model: form.elements.default_model.value.trim(),
      allowed_models: form.elements.allowed_models.value.split(/[\n,]+/).map((s) => s.trim()).filter(Boolean),
      prices: parsePrices(form.elements.prices.value),
    };
    const timeout = form.elements.timeout_seconds.value.trim();
    body.timeout_seconds = timeout === "" ? 120 : Number(timeout);
    const key = form.elements.api_key.value.trim();
    if (key) body.api_key = key;
    else if (form.elements.clear_key.checked) body.api_key = null;
    if (!editing) body.name = form.elements.name.value.trim();
    return body;
  }

  Admin.bindEditor({ collection: "providers", form, dialog, save: $("provider-save"), remove: $("provider-delete"),
    editing: () => editing, body: formBody, reload: load, noun: "provider",
    deleteHint: "It is removed from config.yaml. Only a provider no client uses can be deleted." });

  $("provider-test").addEventListener("click", (e) => {
    clearErrors(form);
    const name = editing ? editing.name : form.elements.name.value.trim() || "new-provider";
    const body = formBody();
    delete body.name;
    runTest(name, body, $("form-test-result"), e.currentTarget);
  });

  $("new-provider").addEventListener("click", () => openEditor(null));
  await load();
})();
