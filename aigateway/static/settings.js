/* Settings page: client defaults (limits, quotas, time zone), logging level, server facts and the
   admin password. Talks to /admin/api/settings and /admin/api/password. */
"use strict";

(async () => {
  const { api, h, field, showErrors, clearErrors, notify, fmt } = Admin;
  const $ = (id) => document.getElementById(id);
  const meta = await Admin.start();
  const form = $("settings-form");
  const pwForm = $("password-form");
  let data = await api("GET", "/admin/api/settings");

  const prefix = "s";
  for (const limit of meta.limits) {
    const target = limit.setting.startsWith("defaults.rate_limit.") ? "rate-fields" : "quota-fields";
    $(target).append(Admin.limitField(prefix, limit, "", limit.setting, limit.setting));
  }
  $("other-fields").append(
    field(prefix, { name: "defaults.timezone", label: "Time zone", spellcheck: "false",
      hint: "IANA name, e.g. Europe/Paris; its midnight starts a new day for limits." }),
    field(prefix, { name: "logging.level", label: "Logging level", type: "select",
      options: [["debug", "debug"], ["info", "info"], ["warning", "warning"], ["error", "error"]] }),
  );
  form.elements["defaults.timezone"].setAttribute("list", "timezones");
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  $("timezones").append(...["UTC", ...zones].map((z) => h("option", { value: z })));

  function fill() {
    for (const [name, value] of Object.entries(data.settings)) {
      const control = form.elements.namedItem(name);
      if (control) control.value = value;
    }
    const s = data.server;
    const facts = [
      ["Version", `aigateway ${s.version} (Python ${s.python})`],
      ["Up for", fmt.duration(s.uptime_seconds)],
      ["Started", fmt.time(s.started_at)],
      ["Config file", s.config_path],
      ["Database", s.database_path],
      ["Database size", fmt.bytes(s.database_bytes)],
      ["Clients", fmt.int(s.clients)],
      ["Providers", fmt.int(s.providers)],
    ];
    $("facts").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    for (const name of Object.keys(data.settings)) {
      const control = form.elements.namedItem(name);
      if (!control) continue;
      const text = control.value.trim();
      body[name] = control.type === "number" ? (text === "" ? null : Number(text)) : text;
    }
    const button = $("settings-save");
    button.disabled = true;
    try {
      data = await api("PATCH", "/admin/api/settings", body);
      clearErrors(form);
      fill();
      notify("Settings saved and applied.");
    } catch (err) {
      showErrors(form, err);
    } finally {
      button.disabled = false;
    }
  });

  pwForm.elements.username.value = meta.username;
  pwForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const current = pwForm.elements.current_password.value;
    const next = pwForm.elements.new_password.value;
    if (next !== pwForm.elements.confirm.value) {
      showErrors(pwForm, new Admin.ApiError(400, "The new passwords differ.", { confirm: "does not match the new password" }));
      return;
    }
    const button = $("password-save");
    button.disabled = true;
    try {
      await api("POST", "/admin/api/password", { current_password: current, new_password: next });
      pwForm.reset();
      pwForm.elements.username.value = meta.username;
      clearErrors(pwForm);
      notify("Password changed. Other sessions have ended.");
    } catch (err) {
      showErrors(pwForm, err);
    } finally {
      button.disabled = false;
    }
  });

  fill();
})();
