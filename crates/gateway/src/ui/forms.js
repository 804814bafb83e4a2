// The ferrofaas UI, part 4 of 4: the deploy form, secrets and failed
// asynchronous calls; then the first view is shown. Loaded last.
"use strict";

// ---- deploy ------------------------------------------------------------

const DEPLOY_FIELDS = ["service", "namespace", "image", "envVars", "labels", "annotations", "secrets"];

async function openDeploy(name) {
  show("deploy");
  editing = null;
  const form = $("deploy");
  form.reset();
  for (const f of DEPLOY_FIELDS) fieldError("error-" + f, "");
  $("deploy-error").textContent = "";
  $("deploy-service").readOnly = false;
  $("deploy-namespace").readOnly = false;
  $("deploy-namespace").value = namespace;
  $("deploy-title").textContent = "Deploy a function";
  $("deploy-submit").textContent = "Deploy";
  let chosen = [];
  if (name) {
    const { ok, data, error } = await apiJSON("GET", "/system/function/" + enc(name));
    if (!ok) {
      $("deploy-error").textContent = error.message;
      return;
    }
    editing = data;
    $("deploy-title").textContent = `Update ${name}`;
    $("deploy-submit").textContent = "Update";
    $("deploy-service").value = data.name;
    $("deploy-service").readOnly = true;
    $("deploy-namespace").value = data.namespace;
    $("deploy-namespace").readOnly = true;
    $("deploy-image").value = data.image;
    $("deploy-envVars").value = pairsText(data.envVars, "=");
    $("deploy-labels").value = pairsText(data.labels, "=");
    $("deploy-annotations").value = pairsText(data.annotations, "=");
    chosen = data.secrets || [];
  }
  loadChoices(chosen);
}

/** The form's suggestions: images, namespaces, and the secrets of its namespace. */
async function loadChoices(chosen) {
  const ns = $("deploy-namespace").value.trim() || DEFAULT_NAMESPACE;
  const [bundles, functions, secrets, spaces] = await Promise.all([
    apiJSON("GET", "/system/bundles"), // 501 where the provider runs images, not bundles
    apiJSON("GET", "/system/functions?namespace=" + enc(ns)),
    apiJSON("GET", "/system/secrets?namespace=" + enc(ns)),
    apiJSON("GET", "/system/namespaces"),
  ]);
  if (spaces.ok) $("namespaces").replaceChildren(...spaces.data.map((n) => el("option", { value: n })));
  const images = new Set();
  if (bundles.ok) for (const b of bundles.data) images.add(b.image);
  if (functions.ok) for (const f of functions.data) images.add(f.image);
  $("images").replaceChildren(...[...images].sort().map((i) => el("option", { value: i })));
  const names = secrets.ok ? secrets.data.map((s) => s.name).sort() : [];
  $("secret-choices").replaceChildren(...names.map((n) => {
    const box = el("input", { type: "checkbox", name: "secrets", value: n });
    box.checked = chosen.includes(n);
    return el("label", { class: "check" }, box, " " + n);
  }));
  $("no-secrets").hidden = names.length > 0;
}

$("deploy-namespace").addEventListener("change", () => {
  const chosen = [...document.querySelectorAll("#secret-choices input:checked")].map((b) => b.value);
  loadChoices(chosen);
});

$("deploy").addEventListener("submit", async (e) => {
  e.preventDefault();
  for (const f of DEPLOY_FIELDS) fieldError("error-" + f, "");
  $("deploy-error").textContent = "";
  const form = new FormData(e.target);
  const errors = {};
  const service = String(form.get("service")).trim();
  if (!service) errors.service = "A name is required.";
  else if (nameProblem(service)) errors.service = nameProblem(service);
  const ns = String(form.get("namespace")).trim() || DEFAULT_NAMESPACE;
  if (nameProblem(ns)) errors.namespace = nameProblem(ns);
  const image = String(form.get("image")).trim();
  if (!image) errors.image = "An image or bundle is required.";
  const maps = {};
  for (const [field, what] of [["envVars", "NAME=value"], ["labels", "key=value"], ["annotations", "key=value"]]) {
    try { maps[field] = parsePairs(String(form.get(field)), "=", what); } catch (err) { errors[field] = err.message; }
  }
  if (Object.keys(errors).length) return showDeployErrors(errors);
  const spec = Object.assign(editing ? {
    // An update keeps what the form does not show.
    envProcess: editing.envProcess,
    constraints: editing.constraints,
    limits: editing.limits,
    requests: editing.requests,
    readOnlyRootFilesystem: editing.readOnlyRootFilesystem,
  } : {}, { service, namespace: ns, image, ...maps, secrets: form.getAll("secrets").map(String) });
  $("deploy-submit").disabled = true;
  try {
    const { ok, status, error } = await apiJSON(editing ? "PUT" : "POST", "/system/functions", spec);
    if (ok) {
      location.hash = "#/function/" + enc(qualified(service, ns));
      return;
    }
    const field = error.field && error.field.split(".")[0];
    if (field && DEPLOY_FIELDS.includes(field)) showDeployErrors({ [field]: error.message });
    else if (status === 409) showDeployErrors({ service: error.message });
    else $("deploy-error").textContent = error.message;
  } finally {
    $("deploy-submit").disabled = false;
  }
});

function showDeployErrors(errors) {
  let first = null;
  for (const [field, message] of Object.entries(errors)) {
    fieldError("error-" + field, message);
    first = first || (field === "secrets" ? document.querySelector("#deploy-secrets input") : $("deploy-" + field));
  }
  if (first) first.focus();
}

// ---- secrets -----------------------------------------------------------

function openSecrets() {
  show("secrets");
  resetSecretForm();
  $("secret-status").textContent = "";
  refreshSecrets();
}

async function refreshSecrets() {
  $("secrets-namespace").textContent = namespace;
  const { ok, data, error } = await apiJSON("GET", "/system/secrets?namespace=" + enc(namespace));
  if (!ok) {
    $("secrets-error").textContent = "Could not list the secrets: " + error.message;
    return;
  }
  $("secrets-error").textContent = "";
  syncRows($("secrets"), data.map((s) => s.name).sort(), (name) => name, (name) =>
    el("tr", { "data-secret": name }, el("td", { text: name }), el("td", { class: "actions" },
      button("Update", `Update ${name}`, () => editSecret(name)), " ",
      button("Delete…", `Delete ${name}`, () => deleteSecret(name), "danger"))));
  $("no-secret-rows").hidden = data.length > 0;
}

function resetSecretForm() {
  secretEditing = null;
  $("secret-form").reset();
  $("secret-name").readOnly = false;
  $("secret-form-title").textContent = "New secret";
  $("secret-submit").textContent = "Create";
  $("secret-cancel").hidden = true;
  fieldError("error-secret-name", "");
  fieldError("error-secret-value", "");
}

function editSecret(name) {
  resetSecretForm();
  secretEditing = name;
  $("secret-name").value = name;
  $("secret-name").readOnly = true;
  $("secret-form-title").textContent = `New value for ${name}`;
  $("secret-submit").textContent = "Update";
  $("secret-cancel").hidden = false;
  $("secret-value").focus();
}

async function deleteSecret(name) {
  if (!await confirmAction(`Delete the secret ${name}? Functions that use it must be updated first.`, "Delete")) return;
  const { ok, error } = await apiJSON("DELETE", "/system/secrets", { name, namespace });
  $("secret-status").textContent = ok ? `Deleted ${name}.` : `Could not delete ${name}: ${error.message}`;
  refreshSecrets();
}

$("secret-cancel").addEventListener("click", resetSecretForm);

$("secret-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  fieldError("error-secret-name", "");
  fieldError("error-secret-value", "");
  $("secret-status").textContent = "";
  const name = $("secret-name").value.trim();
  const value = $("secret-value").value;
  if (!name) return fieldError("error-secret-name", "A name is required."), $("secret-name").focus();
  if (!value) return fieldError("error-secret-value", "A value is required."), $("secret-value").focus();
  const updating = secretEditing !== null;
  const { ok, status, error } = await apiJSON(updating ? "PUT" : "POST", "/system/secrets", { name, namespace, value });
  if (ok) {
    resetSecretForm();
    $("secret-status").textContent = updating ? `Updated ${name}.` : `Created ${name}.`;
    refreshSecrets();
    return;
  }
  if (error.field === "value") fieldError("error-secret-value", error.message);
  else if (error.field === "name" || status === 409 || status === 404) fieldError("error-secret-name", error.message);
  else $("secret-status").textContent = error.message;
});

// ---- failed asynchronous calls (dead letters) ----------------------------

function openFailed() {
  show("failed");
  $("failed-status").textContent = "";
  every(5000, refreshFailed);
}

async function refreshFailed() {
  const { ok, status, data, error } = await apiJSON("GET", "/system/async/dead-letters");
  if (!ok) {
    $("failed-error").textContent = status === 404 ? "Asynchronous calls are off on this gateway." : error.message;
    return;
  }
  $("failed-error").textContent = "";
  // A dead letter does not change: its row is made once.
  syncRows($("failed"), data, (l) => l.callId, (l) => {
    const answer = (l.lastStatus ? String(l.lastStatus) : "none") + (l.error ? ": " + l.error : "");
    return el("tr", { "data-call": l.callId },
      el("td", { text: l.function.replace("." + DEFAULT_NAMESPACE, "") }),
      el("td", { text: l.failedAt.replace("T", " ").replace(/\.\d+/, "") }),
      el("td", { class: "wide", text: String(l.attempts) }),
      el("td", {}, el("details", {}, el("summary", { text: answer }),
        el("pre", { text: `${l.method} ${l.path}\ncall ${l.callId}\n\n${l.lastBody || ""}` }))),
      el("td", { class: "actions" },
        button("Replay", `Replay call ${l.callId}`, () => settleFailed(l, "replay")), " ",
        button("Delete…", `Delete call ${l.callId}`, () => settleFailed(l, "delete"), "danger")));
  });
  $("no-failed").hidden = data.length > 0;
}

async function settleFailed(letter, action) {
  const id = enc(letter.callId);
  if (action === "delete" && !await confirmAction(`Delete the failed call to ${letter.function}? It will not run again.`, "Delete")) return;
  const { ok, error } = action === "replay"
    ? await apiJSON("POST", `/system/async/dead-letters/${id}/replay`)
    : await apiJSON("DELETE", `/system/async/dead-letters/${id}`);
  $("failed-status").textContent = ok
    ? (action === "replay" ? `Queued ${letter.callId} again.` : `Deleted ${letter.callId}.`)
    : error.message;
  refreshFailed();
}

window.addEventListener("hashchange", route);
route();
