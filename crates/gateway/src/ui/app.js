// The ferrofaas UI, part 1 of 4 (with functions.js, usage.js and forms.js,
// loaded in that order): one page, views chosen by the URL's hash
// (#/functions, #/function/NAME, #/deploy[/NAME], #/secrets, #/failed,
// #/usage). It calls the
// gateway's own API (/system/* with the admin credentials, /function/*
// without them) and nothing else. This part: the plumbing and the views.
"use strict";

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const VIEWS = ["signin", "functions", "function", "deploy", "secrets", "failed", "usage"];
const REFRESH_MS = 2000;
const MAX_LOG_LINES = 2000;
const DEFAULT_NAMESPACE = "openfaas-fn";

let auth = sessionStorage.getItem("ferrofaas-auth");
let namespace = sessionStorage.getItem("ferrofaas-namespace") || DEFAULT_NAMESPACE;
let timers = [];
let logs = null; // the AbortController of the open log stream
let editing = null; // the function the deploy form updates, if any
let secretEditing = null; // the secret the secret form updates, if any

// ---- plumbing ----------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

/** A call to /system/*; signs out on 401. */
async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: auth, "X-Requested-With": "ferrofaas-ui" }, options.headers || {});
  const resp = await fetch(path, Object.assign({}, options, { headers }));
  if (resp.status === 401) {
    signOut("Your session ended: sign in again.");
    throw new Error("signed out");
  }
  return resp;
}

/** JSON in, and the answer's JSON (or its error) out. */
async function apiJSON(method, path, body) {
  const options = { method };
  if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers = { "Content-Type": "application/json" };
  }
  const resp = await api(path, options);
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  const error = resp.ok ? null : {
    message: (data && data.message) || `the gateway answered ${resp.status}`,
    field: data && data.field,
  };
  return { ok: resp.ok, status: resp.status, data, error };
}

/** How the API and URLs name a function: `name`, or `name.namespace` outside the default one. */
function qualified(name, ns) {
  return ns === DEFAULT_NAMESPACE ? name : `${name}.${ns}`;
}

function parts(fn) {
  const at = fn.indexOf(".");
  return at < 0 ? { name: fn, ns: DEFAULT_NAMESPACE } : { name: fn.slice(0, at), ns: fn.slice(at + 1) };
}

/** A button that runs `onClick`; `label` is what a screen reader says. */
function button(text, label, onClick, cls = "") {
  const b = el("button", { type: "button", text, "aria-label": label, class: cls });
  b.addEventListener("click", onClick);
  return b;
}

/**
 * Brings `tbody`'s rows in line with `items`, in their order: a row is made
 * once by `make` (keyed by `key`), then only `update`d, so that a refresh
 * does not take the keyboard's focus away from it.
 */
function syncRows(tbody, items, key, make, update = () => {}) {
  const old = new Map([...tbody.rows].map((r) => [r.dataset.key, r]));
  const rows = items.map((item) => {
    const k = key(item);
    const row = old.get(k) || make(item);
    old.delete(k);
    row.dataset.key = k;
    update(row, item);
    return row;
  });
  for (const row of old.values()) row.remove();
  rows.forEach((row, i) => { if (tbody.rows[i] !== row) tbody.insertBefore(row, tbody.rows[i] || null); });
}

const NAME_RULE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** What is wrong with a function or namespace name ("" when nothing). */
function nameProblem(name) {
  return NAME_RULE.test(name) && name.length <= 63 ? ""
    : "Lowercase letters, digits and '-', starting and ending with a letter or digit (at most 63).";
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function every(ms, fn) {
  fn();
  timers.push(setInterval(fn, ms));
}

function stopView() {
  for (const t of timers) clearInterval(t);
  timers = [];
  if (logs) logs.abort();
  logs = null;
}

function show(view) {
  for (const v of VIEWS) $(v + "-view").hidden = v !== view;
  $("nav").hidden = !auth;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.view === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const heading = $(view + "-view").querySelector("h2");
  if (heading) heading.focus({ preventScroll: true });
}

function signOut(message = "") {
  auth = null;
  namespace = DEFAULT_NAMESPACE;
  sessionStorage.clear();
  stopView();
  $("signin-error").textContent = message;
  show("signin");
}

function route() {
  stopView();
  if (!auth) return show("signin");
  const [view, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : null;
  if (view === "function" && arg) return openFunction(arg);
  if (view === "deploy") return openDeploy(arg);
  if (view === "secrets") return openSecrets();
  if (view === "failed") return openFailed();
  if (view === "usage") return openUsage();
  return openFunctions();
}

/**
 * `key=value` lines into an object (blank lines and `#` comments skipped);
 * a value is kept as written (an update must not change what it did not
 * touch), except that `trim` trims it (headers). The first bad line is an
 * error.
 */
function parsePairs(text, sep, what, trim = false) {
  const out = {};
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(/\r$/, "");
    if (!line.trim() || line.trimStart().startsWith("#")) continue;
    const at = line.indexOf(sep);
    const key = at < 0 ? "" : line.slice(0, at).trim();
    if (!key) throw new Error(`line ${i + 1}: expected ${what}`);
    if (Object.hasOwn(out, key)) throw new Error(`line ${i + 1}: ${key} is given twice`);
    const value = line.slice(at + sep.length);
    out[key] = trim ? value.trim() : value;
  }
  return out;
}

function pairsText(obj, sep) {
  return Object.entries(obj || {}).map(([k, v]) => `${k}${sep}${v}`).join("\n");
}

function fieldError(id, message) {
  const p = $(id);
  p.textContent = message || "";
  const input = document.querySelector(`[aria-describedby~="${id}"]`);
  if (input) {
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
}

/** Asks in a modal dialog; resolves true when the user confirms. */
function confirmAction(text, action) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = action;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

function shellQuote(s) {
  return /^[A-Za-z0-9_\/.:=@%+,-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\\''") + "'";
}
