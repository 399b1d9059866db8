/* Clients page: list, create (key shown once), edit every setting, rotate key, enable/disable,
   reset usage, delete. Talks to /admin/api/clients. */
"use strict";

(async () => {
  const { api, h, field, showErrors, clearErrors, notify, confirmAction, copyText, fmt } = Admin;
  const $ = (id) => document.getElementById(id);
  const meta = await Admin.start();
  const dialog = $("client-dialog");
  const form = $("client-form");
  const keyDialog = $("key-dialog");
  Admin.closers(dialog);
  Admin.closers(keyDialog);
  let clients = [];
  let editing = null; // the client being edited; null while creating one

  const providerOptions = meta.providers.map((p) => [p, p]);
  const keyTypeOptions = meta.key_types.map((t) => [t, `${t}… ${t === "sk-" ? "(OpenAI style)" : t === "gm_" ? "(gateway style)" : "(Anthropic style)"}`]);

  // -- the form, built once from the meta data
  $("client-main-fields").append(
    field("c", { name: "name", label: "Name", required: true, hint: "Unique; shown in logs and usage." }),
    field("c", { name: "provider", label: "Provider", type: "select", options: providerOptions }),
    field("c", { name: "default_model", label: "Default model", placeholder: "the provider's default",
      hint: "Used when a request names no model." }),
    field("c", { name: "base_url", label: "Base URL override", type: "url", placeholder: "the provider's endpoint",
      hint: "For example another Ollama box: http://10.0.0.5:11434/v1" }),
    field("c", { name: "allowed_providers", label: "Other backends", placeholder: "none",
      hint: `Further providers it may reach, as provider/model or by their allowed models. Comma-separated: ${meta.providers.join(", ")}.` }),
    field("c", { name: "allowed_routes", label: "Routes", placeholder: "none",
      hint: meta.routes.length ? `Model names with fallbacks (Routes page): ${meta.routes.join(", ")}.`
        : "No routes yet (Routes page)." }),
    field("c", { name: "key_type", label: "Key type", type: "select", options: keyTypeOptions }),
  );
  const LISTS = ["allowed_providers", "allowed_routes", "allowed_models", "allowed_networks"];
  // datetime-local speaks the browser's local time; the API speaks seconds since the epoch
  const localTime = (seconds) => {
    const d = new Date(seconds * 1000);
    return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  };
  $("client-prompt-field").append(field("c", { name: "system_prompt", label: "System prompt", type: "textarea",
    wide: true, rows: 4, placeholder: "Prepended as a system message to every request (optional)" }));
  for (const limit of meta.limits) {
    const fallback = limit.default ? (limit.usd ? `$${limit.default}` : fmt.int(limit.default)) : "unlimited";
    $("client-limit-fields").append(Admin.limitField("c", limit, `default: ${fallback}`));
  }
  const teamOptions = [["", "none"], ...meta.teams.map((t) => [String(t.id), t.name])];
  $("client-governance-fields").append(
    field("c", { name: "team_id", label: "Team", type: "select", options: teamOptions,
      hint: "Its limits and budgets also apply, shared with the team's other clients (Teams page)." }),
    field("c", { name: "expires_at", label: "Key expires", type: "datetime-local",
      hint: "In your browser's time zone; empty: never. After it, requests get 401." }),
    field("c", { name: "allowed_models", label: "Allowed models", placeholder: "any",
      hint: "Names or wildcards, comma-separated (gpt-4o*, claude-*); checked on the model a request is sent to." }),
    field("c", { name: "allowed_networks", label: "Allowed networks", placeholder: "anywhere",
      hint: "Addresses or CIDR networks requests may come from, comma-separated (10.0.0.0/8)." }),
  );
  $("rotate-type").append(...keyTypeOptions.map(([v, t]) => h("option", { value: v }, t)));

  // -- table
  async function load() {
    clients = (await api("GET", "/admin/api/clients")).clients;
    render();
  }

  function render() {
    const body = $("clients-table").querySelector("tbody");
    body.replaceChildren(...clients.map(row));
    $("clients-empty").hidden = clients.length > 0;
    $("clients-table").hidden = clients.length === 0;
  }

  function row(c) {
    const status = c.enabled ? h("span", { class: "badge ok" }, "enabled") : h("span", { class: "badge off" }, "disabled");
    const cell = (label, ...content) => h("td", { "data-label": label }, ...content);
    const num = (label, ...content) => h("td", { "data-label": label, class: "num" }, ...content);
    return h("tr", { dataset: { id: c.id, name: c.name } },
      cell("Name", h("strong", {}, c.name)),
      cell("Key", h("code", {}, c.key_prefix)),
      cell("Provider", c.provider),
      cell("Model", c.default_model || h("span", { class: "muted" }, "provider default")),
      cell("Status", status),
      num("Requests today", fmt.int(c.today.requests)),
      num("Tokens today", `${fmt.int(c.today.input_tokens)} / ${fmt.int(c.today.output_tokens)}`),
      cell("Last used", h("span", { title: fmt.time(c.last_used_at) }, fmt.ago(c.last_used_at))),
      h("td", { class: "actions-cell" },
        h("button", { type: "button", class: "small", "aria-label": `Edit ${c.name}`, onclick: () => openEditor(c) }, "Edit")),
    );
  }

  // -- editor
  function openEditor(client) {
    editing = client;
    form.reset();
    clearErrors(form);
    $("client-title").textContent = client ? `Edit ${client.name}` : "New client";
    $("client-save").textContent = client ? "Save changes" : "Create client";
    form.elements.key_type.closest(".field").hidden = Boolean(client);
    $("client-manage").hidden = !client;
    if (client) {
      for (const name of ["name", "provider", "default_model", "base_url", "system_prompt"]) {
        form.elements[name].value = client[name] || "";
      }
      for (const name of LISTS) form.elements[name].value = (client[name] || []).join(", ");
      form.elements.team_id.value = client.team_id === null ? "" : String(client.team_id);
      form.elements.expires_at.value = client.expires_at ? localTime(client.expires_at) : "";
      for (const limit of meta.limits) {
        const value = client[limit.field];
        form.elements[limit.field].value = value === null ? "" : value;
      }
      $("rotate-type").value = client.key_type;
      updateEnableButton();
    }
    dialog.showModal();
    form.elements.name.focus();
  }

  function updateEnableButton() {
    let button = $("client-toggle");
    if (!button) {
      button = h("button", { type: "button", id: "client-toggle", onclick: toggleEnabled });
      $("client-reset").after(button);
    }
    button.textContent = editing.enabled ? "Disable client" : "Enable client";
  }

  function formBody() {
    const body = {};
    for (const name of ["name", "provider", "default_model", "base_url", "system_prompt"]) {
      body[name] = form.elements[name].value;
    }
    for (const name of LISTS) body[name] = form.elements[name].value.split(/[\s,]+/).filter(Boolean);
    body.team_id = form.elements.team_id.value === "" ? null : Number(form.elements.team_id.value);
    const expires = form.elements.expires_at.value;
    body.expires_at = expires ? new Date(expires).getTime() / 1000 : null;
    for (const limit of meta.limits) {
      const text = form.elements[limit.field].value.trim();
      body[limit.field] = text === "" ? null : Number(text);
    }
    if (!editing) {
      body.key_type = form.elements.key_type.value;
      for (const name of [...meta.limits.map((l) => l.field), "team_id", "expires_at"]) {
        if (body[name] === null) delete body[name];
      }
    }
    return body;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $("client-save");
    button.disabled = true;
    try {
      if (editing) {
        const saved = await api("PATCH", `/admin/api/clients/${editing.id}`, formBody());
        dialog.close();
        notify(`Saved ${saved.name}.`);
      } else {
        const created = await api("POST", "/admin/api/clients", formBody());
        dialog.close();
        showKey(created, "created");
      }
      await load();
    } catch (err) {
      showErrors(form, err);
    } finally {
      button.disabled = false;
    }
  });

  async function act(fn) {
    try {
      await fn();
    } catch (err) {
      notify(err.message, true);
    }
  }

  async function toggleEnabled() {
    await act(async () => {
      const saved = await api("PATCH", `/admin/api/clients/${editing.id}`, { enabled: !editing.enabled });
      editing = saved;
      updateEnableButton();
      notify(saved.enabled ? `${saved.name} is enabled: its key works.` : `${saved.name} is disabled: its key is refused.`);
      await load();
    });
  }

  $("client-rotate").addEventListener("click", () => act(async () => {
    const grace = Number($("rotate-grace").value || 0);
    const ok = await confirmAction(`Rotate the key of ${editing.name}?`, grace
      ? `A new key is made now; the old one keeps working for ${grace} seconds, then is refused.`
      : "A new key is made now and the old one stops working at once. Apps using it will need the new key.", "Rotate key");
    if (!ok) return;
    const rotated = await api("POST", `/admin/api/clients/${editing.id}/rotate-key`,
      { key_type: $("rotate-type").value, grace_seconds: grace });
    dialog.close();
    showKey(rotated, "rotated");
    await load();
  }));

  $("client-reset").addEventListener("click", () => act(async () => {
    const ok = await confirmAction(`Reset usage of ${editing.name}?`,
      "Its rate limits and daily quotas start afresh from now. The request log and usage history stay.", "Reset usage");
    if (!ok) return;
    await api("POST", `/admin/api/clients/${editing.id}/reset-usage`);
    notify(`Usage of ${editing.name} reset.`);
    await load();
  }));

  $("client-delete").addEventListener("click", () => act(async () => {
    const ok = await confirmAction(`Delete ${editing.name}?`,
      "Its key is refused from the next request on. This cannot be undone; its usage history stays.", "Delete client");
    if (!ok) return;
    await api("DELETE", `/admin/api/clients/${editing.id}`);
    dialog.close();
    notify(`Deleted ${editing.name}.`);
    await load();
  }));

  // -- the key, shown once
  function curlExample(client) {
    const payload = { messages: [{ role: "user", content: "Hello" }] };
    if (client.default_model) payload.model = client.default_model;
    return [
      `curl ${location.origin}/v1/chat/completions \\`,
      `  -H "Authorization: Bearer ${client.api_key}" \\`,
      `  -H "Content-Type: application/json" \\`,
      `  -d '${JSON.stringify(payload)}'`,
    ].join("\n");
  }

  function showKey(client, what) {
    $("key-title").textContent = `API key for ${client.name} (${what})`;
    $("new-key").value = client.api_key;
    $("curl-example").textContent = curlExample(client);
    $("copy-status").textContent = "";
    keyDialog.showModal();
    $("copy-key").focus();
  }

  $("copy-key").addEventListener("click", async () => {
    const ok = await copyText($("new-key").value, $("new-key"));
    $("copy-status").textContent = ok ? "Copied to the clipboard." : "Select the key and copy it (Ctrl+C / ⌘C).";
  });
  $("copy-curl").addEventListener("click", async () => {
    const ok = await copyText($("curl-example").textContent);
    $("copy-status").textContent = ok ? "Example copied." : "Select the example and copy it.";
  });
  keyDialog.addEventListener("close", () => { $("new-key").value = ""; $("curl-example").textContent = ""; });

  $("new-client").addEventListener("click", () => openEditor(null));
  await load();
})();
