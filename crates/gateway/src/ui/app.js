// The ferrofaas UI: the gateway's own API (/system/*, with the admin
// credentials) and /function/*; no other requests.
"use strict";
const $ = (id) => document.getElementById(id);
let auth = sessionStorage.getItem("ferrofaas-auth");
let selected = null;
let timer = null;

function show(view) {
  for (const v of ["signin-view", "functions-view", "invoke-view"]) $(v).hidden = true;
  for (const v of view) $(v).hidden = false;
  $("signout").hidden = !auth;
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: auth }, options.headers || {});
  const resp = await fetch(path, Object.assign({}, options, { headers }));
  if (resp.status === 401) { signOut(); throw new Error("signed out"); }
  return resp;
}

function signOut() {
  auth = null;
  sessionStorage.removeItem("ferrofaas-auth");
  clearInterval(timer);
  show(["signin-view"]);
}

async function refresh() {
  try {
    const resp = await api("/system/functions");
    const functions = await resp.json();
    $("list-error").textContent = "";
    const body = $("functions");
    body.replaceChildren();
    for (const f of functions.sort((a, b) => a.name.localeCompare(b.name))) {
      const row = document.createElement("tr");
      const name = document.createElement("td");
      const link = document.createElement("a");
      link.href = "#" + encodeURIComponent(f.name);
      link.textContent = f.name;
      link.addEventListener("click", (e) => { e.preventDefault(); choose(f.name); });
      name.append(link);
      const cells = [f.image, `${f.availableReplicas}/${f.replicas}`, String(f.invocationCount)];
      row.append(name, ...cells.map((text) => { const td = document.createElement("td"); td.textContent = text; return td; }));
      body.append(row);
    }
    $("empty").hidden = functions.length > 0;
  } catch (e) {
    if (auth) $("list-error").textContent = "Could not list functions: " + e.message;
  }
}

function choose(name) {
  selected = name;
  $("invoke-name").textContent = name;
  $("result").textContent = "";
  show(["functions-view", "invoke-view"]);
}

function start() {
  show(["functions-view"]);
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, 2000);
}

$("signin").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  const candidate = "Basic " + btoa(form.get("username") + ":" + form.get("password"));
  const resp = await fetch("/system/functions", { headers: { Authorization: candidate } });
  if (resp.ok) {
    auth = candidate;
    sessionStorage.setItem("ferrofaas-auth", auth);
    $("signin-error").textContent = "";
    start();
  } else {
    $("signin-error").textContent = resp.status === 401 ? "Wrong username or password." : `The gateway answered ${resp.status}.`;
  }
});

$("signout").addEventListener("click", signOut);

$("invoke").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  const method = form.get("method");
  let path = String(form.get("path") || "/");
  if (!path.startsWith("/")) path = "/" + path;
  const started = performance.now();
  try {
    const resp = await fetch(`/function/${encodeURIComponent(selected)}${path}`, {
      method,
      body: method === "GET" ? undefined : form.get("body"),
    });
    const text = await resp.text();
    const ms = (performance.now() - started).toFixed(1);
    const headers = [...resp.headers].map(([k, v]) => `${k}: ${v}`).join("\n");
    $("result").textContent = `${resp.status} ${resp.statusText} (${ms} ms)\n${headers}\n\n${text}`;
  } catch (err) {
    $("result").textContent = "The request failed: " + err.message;
  }
});

if (auth) start(); else show(["signin-view"]);
