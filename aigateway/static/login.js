/* Login page: POST /admin/api/login, then go where the admin was heading. */
"use strict";

(() => {
  const form = document.getElementById("login-form");

  function target() {
    const next = new URLSearchParams(location.search).get("next") || "";
    // Only paths inside the admin UI: never an open redirect to another site.
    return /^\/admin\/[A-Za-z0-9/_-]*(\?[^#]*)?$/.test(next) ? next : "/admin/clients";
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    const body = { username: form.elements.username.value.trim(), password: form.elements.password.value };
    button.disabled = true;
    try {
      await Admin.api("POST", "/admin/api/login", body);
      location.assign(target());
    } catch (err) {
      if (err.status === 429 && err.retryAfter) {
        err.message = `Too many failed logins. Try again in ${err.retryAfter} seconds.`;
      }
      Admin.showErrors(form, err);
      if (err.status === 401) form.elements.password.select();
    } finally {
      button.disabled = false;
    }
  });
})();
