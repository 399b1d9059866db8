/* Teams page: groups of clients whose limits and budgets hold across all of them. Talks to
   /admin/api/teams. */
"use strict";

(async () => {
  const { api, h, field, clearErrors, fmt } = Admin;
  const $ = (id) => document.getElementById(id);
  const meta = await Admin.start();
  const dialog = $("team-dialog");
  const form = $("team-form");
  Admin.closers(dialog);
  let editing = null;

  $("team-fields").append(field("t", { name: "name", label: "Name", required: true, hint: "Unique; shown in refusals." }),
    ...meta.limits.map((limit) => Admin.limitField("t", limit, "not limited")));

  const amount = (limit, value) => (limit.usd ? `$${value}` : fmt.int(value));

  async function load() {
    const teams = (await api("GET", "/admin/api/teams")).teams;
    $("teams-table").querySelector("tbody").replaceChildren(...teams.map(row));
    $("teams-empty").hidden = teams.length > 0;
  }

  function row(t) {
    const set = meta.limits.filter((l) => t[l.field] !== null && t[l.field] !== 0);
    return h("tr", { dataset: { name: t.name } },
      h("td", { "data-label": "Name" }, h("strong", {}, t.name)),
      h("td", { "data-label": "Limits" }, set.length ? set.map((l) => `${l.label}: ${amount(l, t[l.field])}`).join("; ")
        : h("span", { class: "muted" }, "none")),
      h("td", { "data-label": "Clients", class: "num" }, fmt.int(t.members)),
      h("td", { class: "actions-cell" },
        h("button", { type: "button", class: "small", "aria-label": `Edit ${t.name}`, onclick: () => openEditor(t) },
          "Edit")),
    );
  }

  function openEditor(team) {
    editing = team;
    form.reset();
    clearErrors(form);
    $("team-title").textContent = team ? `Edit ${team.name}` : "Add team";
    $("team-save").textContent = team ? "Save changes" : "Add team";
    $("team-delete").hidden = !team;
    if (team) {
      form.elements.name.value = team.name;
      for (const limit of meta.limits) form.elements[limit.field].value = team[limit.field] ?? "";
    }
    dialog.showModal();
    form.elements.name.focus();
  }

  function formBody() {
    const body = { name: form.elements.name.value.trim() };
    for (const limit of meta.limits) {
      const text = form.elements[limit.field].value.trim();
      body[limit.field] = text === "" ? null : Number(text);
    }
    return body;
  }

  Admin.bindEditor({ collection: "teams", key: "id", form, dialog, save: $("team-save"), remove: $("team-delete"),
    editing: () => editing, body: formBody, reload: load, noun: "team",
    deleteHint: "Its clients stay, in no team, with their own limits only." });

  $("new-team").addEventListener("click", () => openEditor(null));
  await load();
})();
