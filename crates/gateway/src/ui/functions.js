// The ferrofaas UI, part 2 of 4: signing in, the functions list and one
// function's page (invoking it, its logs, its charts). Loaded after
// app.js, whose helpers it uses.
"use strict";

// ---- sign in -------------------------------------------------------------

$("signin").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  const candidate = "Basic " + btoa(form.get("username") + ":" + form.get("password"));
  try {
    const resp = await fetch("/system/info", {
      headers: { Authorization: candidate, "X-Requested-With": "ferrofaas-ui" },
    });
    if (!resp.ok) {
      $("signin-error").textContent =
        resp.status === 401 ? "Wrong username or password." : `The gateway answered ${resp.status}.`;
      return;
    }
  } catch (err) {
    $("signin-error").textContent = "The gateway cannot be reached: " + err.message;
    return;
  }
  auth = candidate;
  sessionStorage.setItem("ferrofaas-auth", auth);
  $("signin-error").textContent = "";
  e.target.reset();
  route();
});

$("signout").addEventListener("click", () => {
  signOut();
  history.replaceState(null, "", "#/functions");
});

// ---- functions list ----------------------------------------------------

function openFunctions() {
  show("functions");
  every(REFRESH_MS, refreshFunctions);
}

async function refreshFunctions() {
  try {
    const [list, spaces] = await Promise.all([
      apiJSON("GET", "/system/functions?namespace=" + enc(namespace)),
      apiJSON("GET", "/system/namespaces"),
    ]);
    if (spaces.ok) showNamespaces(spaces.data);
    const { ok, data, error } = list;
    if (!ok) throw new Error(error.message);
    $("list-error").textContent = "";
    syncRows($("functions"), data.sort((a, b) => a.name.localeCompare(b.name)), (f) => f.name,
      (f) => el("tr", { "data-function": f.name },
        el("td", {}, el("a", { href: "#/function/" + enc(qualified(f.name, namespace)), text: f.name })),
        el("td", { class: "wide" }), el("td", { class: "replicas" }), el("td", { class: "invocations" }),
        el("td", { class: "triggers" })),
      (row, f) => {
        setText(row.cells[1], f.image);
        setText(row.cells[2], `${f.availableReplicas}/${f.replicas}`);
        setText(row.cells[3], String(f.invocationCount));
        const triggers = f.triggers || [];
        setText(row.cells[4], triggers.map(triggerName).join(", "));
        // A broker that is down, or events that could not be stored.
        row.cells[4].classList.toggle("error", triggers.some((t) => t.lastError));
        row.cells[4].title = triggers.filter((t) => t.lastError).map((t) => `${triggerName(t)}: ${t.lastError}`).join("\n");
      });
    $("empty").hidden = data.length > 0;
  } catch (err) {
    if (auth) $("list-error").textContent = "Could not list the functions: " + err.message;
  }
}

/** The namespace chooser, shown once there is more than one. */
function showNamespaces(names) {
  const select = $("namespace");
  if (!names.includes(namespace)) names = [...names, namespace];
  const wanted = names.sort().join("\n");
  if (select.dataset.names !== wanted) {
    select.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
    select.dataset.names = wanted;
  }
  select.value = namespace;
  $("namespace-choice").hidden = names.length < 2;
}

// Another namespace: the lists start again (the focus stays on the
// chooser: arrow keys change it); a function's page or the form give way
// to the list. Failed calls are listed for every namespace.
$("namespace").addEventListener("change", () => {
  namespace = $("namespace").value;
  sessionStorage.setItem("ferrofaas-namespace", namespace);
  $("functions").replaceChildren();
  $("secrets").replaceChildren();
  const view = location.hash.replace(/^#\/?/, "").split("/")[0];
  if (view === "secrets") refreshSecrets();
  else if (view === "functions" || view === "") refreshFunctions();
  else if (view === "usage") refreshUsage();
  else if (view !== "failed") location.hash = "#/functions";
});

// ---- one function -------------------------------------------------------

let current = null; // the function page's function: `name` or `name.namespace`

function openFunction(name) {
  current = name;
  show("function");
  const { name: bare, ns } = parts(name);
  $("fn-title").textContent = bare;
  $("fn-namespace").textContent = ns === DEFAULT_NAMESPACE ? "" : `in ${ns}`;
  $("fn-edit").href = "#/deploy/" + enc(name);
  $("fn-error").textContent = "";
  for (const id of ["fn-image", "fn-replicas", "fn-invocations", "fn-secrets", "fn-labels"]) $(id).textContent = "…";
  $("scale-status").textContent = "";
  $("invoke-result").hidden = true;
  $("invoke-call").hidden = true;
  $("logs").textContent = "";
  $("charts").replaceChildren();
  $("scale-replicas").value = "";
  updateCommands();
  every(REFRESH_MS, refreshFunction);
  every(REFRESH_MS, refreshCharts);
  startLogs();
}

async function refreshFunction() {
  const name = current;
  try {
    const { ok, status, data, error } = await apiJSON("GET", "/system/function/" + enc(name));
    if (name !== current) return;
    if (!ok) {
      $("fn-error").textContent = status === 404 ? `${name} does not exist (any more).` : error.message;
      return;
    }
    $("fn-error").textContent = "";
    setText($("fn-image"), data.image);
    setText($("fn-replicas"), `${data.availableReplicas}/${data.replicas}`);
    // The provider's last replica failure, while replicas are missing.
    setText($("fn-reason"), data.reason || "");
    for (const node of document.querySelectorAll(".why")) node.hidden = !data.reason;
    setText($("fn-invocations"), String(data.invocationCount));
    setText($("fn-secrets"), (data.secrets || []).join(", ") || "none");
    setText($("fn-labels"), pairsText(data.labels, "=").replace(/\n/g, ", ") || "none");
    showTriggers(data.triggers || []);
    if ($("scale-replicas").value === "") $("scale-replicas").value = String(data.replicas);
  } catch (err) {
    if (auth) $("fn-error").textContent = "Could not read the function: " + err.message;
  }
}

/** A trigger as people write it: `cron @every 5s`, `nats orders.new`. */
function triggerName(t) {
  return t.schedule ? `${t.connector} ${t.schedule}` : `${t.connector} ${t.topic}`;
}

/** A time of the API (RFC 3339) as this browser's local time. */
function when(rfc3339) {
  if (!rfc3339) return "-";
  const date = new Date(rfc3339);
  return Number.isNaN(date.getTime()) ? rfc3339 : date.toLocaleString();
}

/** The function page's triggers: what each did, and why one is down. */
function showTriggers(triggers) {
  $("fn-triggers-part").hidden = triggers.length === 0;
  syncRows($("fn-triggers"), triggers, (t) => `${t.connector}\n${t.topic}`,
    () => el("tr", {}, ...Array.from({ length: 8 }, () => el("td"))),
    (row, t) => {
      const cells = [
        triggerName(t), String(t.events), t.duplicates ? `${t.dispatched} (+${t.duplicates} stored before)` : String(t.dispatched), String(t.failed),
        when(t.lastEvent), when(t.nextEvent), t.lastEvent ? `${(t.lagSeconds * 1000).toFixed(1)} ms` : "-",
        t.lastError || "ok",
      ];
      cells.forEach((text, i) => setText(row.cells[i], text));
      row.cells[7].classList.toggle("error", Boolean(t.lastError));
    });
}

$("scale").addEventListener("submit", async (e) => {
  e.preventDefault();
  const replicas = Number($("scale-replicas").value);
  if (!Number.isInteger(replicas) || replicas < 0) {
    $("scale-status").textContent = "A whole number of replicas, 0 or more.";
    return;
  }
  $("scale-status").textContent = `Scaling to ${replicas}…`;
  const { name, ns } = parts(current);
  const { ok, error } = await apiJSON("POST", "/system/scale-function/" + enc(current),
    { serviceName: name, namespace: ns, replicas });
  $("scale-status").textContent = ok ? `Asked for ${replicas} replica${replicas === 1 ? "" : "s"}.` : error.message;
  refreshFunction();
});

$("fn-delete").addEventListener("click", async () => {
  const name = current;
  if (!await confirmAction(`Delete ${name}? Its replicas stop and its invocations fail from now on.`, "Delete")) return;
  const { ok, error } = await apiJSON("DELETE", "/system/functions",
    { functionName: parts(name).name, namespace: parts(name).ns });
  if (ok) location.hash = "#/functions";
  else $("fn-error").textContent = `Could not delete ${name}: ${error.message}`;
});

// Invoke -------------------------------------------------------------------

function invokeRequest() {
  const form = new FormData($("invoke"));
  let path = String(form.get("path") || "/").trim();
  if (!path.startsWith("/")) path = "/" + path;
  const method = String(form.get("method"));
  const headers = parsePairs(String(form.get("headers")), ":", "Name: value", true);
  const body = method === "GET" ? "" : String(form.get("body"));
  const queued = form.get("async") === "on";
  return { method, path, headers, body, queued, route: queued ? "async-function" : "function" };
}

let callWatch = null; // the timer following an asynchronous call

/** Follows an asynchronous call's state until it settles (or a minute passes). */
function watchCall(id) {
  clearInterval(callWatch);
  const started = Date.now();
  $("invoke-call").hidden = false;
  $("invoke-call-id").textContent = id;
  $("invoke-call-state").textContent = "queued";
  const poll = async () => {
    const { ok, data } = await apiJSON("GET", "/system/async/" + enc(id));
    if (ok) {
      const code = data.status ? ` (${data.status})` : "";
      const error = data.error ? `: ${data.error}` : "";
      $("invoke-call-state").textContent = `${data.state}${code}${error}, ${data.attempts} attempt${data.attempts === 1 ? "" : "s"}`;
      if (data.state === "done" || data.state === "dead-lettered") clearInterval(callWatch);
    }
    if (Date.now() - started > 60000) clearInterval(callWatch);
  };
  callWatch = setInterval(poll, 500);
  timers.push(callWatch);
}

$("invoke").addEventListener("submit", async (e) => {
  e.preventDefault();
  let req;
  try { req = invokeRequest(); fieldError("invoke-headers-error", ""); } catch (err) {
    fieldError("invoke-headers-error", err.message);
    return;
  }
  const started = performance.now();
  try {
    // No Authorization header: functions never see the admin credentials.
    const resp = await fetch(`/${req.route}/${enc(current)}${req.path}`, {
      method: req.method,
      headers: req.headers,
      body: req.method === "GET" ? undefined : req.body,
    });
    const text = await resp.text();
    $("invoke-status").textContent = `${resp.status} ${resp.statusText}`;
    $("invoke-status").className = resp.ok ? "ok" : "error";
    $("invoke-duration").textContent = `${(performance.now() - started).toFixed(1)} ms`;
    $("invoke-headers").textContent = [...resp.headers].map(([k, v]) => `${k}: ${v}`).join("\n");
    $("invoke-body").textContent = text;
    clearInterval(callWatch);
    $("invoke-call").hidden = true;
    const callId = resp.headers.get("X-Call-Id");
    if (req.queued && resp.status === 202 && callId) watchCall(callId);
  } catch (err) {
    $("invoke-status").textContent = "The request failed: " + err.message;
    $("invoke-status").className = "error";
    $("invoke-duration").textContent = "-";
    $("invoke-headers").textContent = "";
    $("invoke-body").textContent = "";
  }
  $("invoke-result").hidden = false;
  refreshFunction();
});

function updateCommands() {
  let req;
  try { req = invokeRequest(); fieldError("invoke-headers-error", ""); } catch (err) {
    fieldError("invoke-headers-error", err.message);
    return;
  }
  const url = `${location.origin}/${req.route}/${enc(current)}${req.path}`;
  const curl = ["curl", "-i", "-X", req.method, shellQuote(url)];
  const faas = ["faas", "invoke", shellQuote(current), "--gateway", shellQuote(location.origin)];
  if (req.method !== "POST") faas.push("--method", req.method);
  if (req.queued) faas.push("--async");
  for (const [k, v] of Object.entries(req.headers)) {
    curl.push("-H", shellQuote(`${k}: ${v}`));
    faas.push("-H", shellQuote(`${k}: ${v}`));
  }
  const [pathOnly, query] = req.path.split("?");
  for (const pair of (query || "").split("&").filter(Boolean)) faas.push("--query", shellQuote(decodeURIComponent(pair)));
  if (req.body) curl.push("--data-binary", shellQuote(req.body));
  $("cmd-curl").textContent = curl.join(" ");
  let faasLine = (req.body ? `printf %s ${shellQuote(req.body)} | ` : "") + faas.join(" ") + (req.body ? "" : " < /dev/null");
  if (pathOnly !== "/") faasLine = `# faas invoke calls the function's root path; curl reaches ${pathOnly}\n` + faasLine;
  $("cmd-faas").textContent = faasLine;
}

$("invoke").addEventListener("input", updateCommands);
$("invoke").addEventListener("change", updateCommands);

for (const button of document.querySelectorAll("button.copy")) {
  button.addEventListener("click", async () => {
    const text = $(button.dataset.copy).textContent;
    let copied = true;
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // No clipboard API (plain http on another host): the old way, from a
      // selection, which stays for the user to copy if that fails too.
      const range = document.createRange();
      range.selectNodeContents($(button.dataset.copy));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      copied = document.execCommand("copy");
    }
    $("copy-status").textContent = copied ? "Copied." : "Selected: press Ctrl+C to copy.";
    setTimeout(() => { $("copy-status").textContent = ""; }, 2000);
  });
}

// Logs ---------------------------------------------------------------------

function appendLog(line) {
  const box = $("logs");
  const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
  box.append(line + "\n");
  while (box.childNodes.length > MAX_LOG_LINES) box.firstChild.remove();
  if (atEnd) box.scrollTop = box.scrollHeight;
}

async function startLogs() {
  if (logs) logs.abort();
  const controller = new AbortController();
  logs = controller;
  $("logs").textContent = "";
  const follow = $("logs-follow").checked;
  try {
    const { name, ns } = parts(current);
    const query = `name=${enc(name)}&namespace=${enc(ns)}&tail=200&follow=${follow}`;
    const resp = await api("/system/logs?" + query, { signal: controller.signal });
    if (!resp.ok) {
      const data = await resp.json().catch(() => ({}));
      appendLog(`(no logs: ${data.message || resp.status})`);
      return;
    }
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      const lines = buffered.split("\n");
      buffered = lines.pop();
      for (const line of lines.filter(Boolean)) {
        try {
          const l = JSON.parse(line);
          appendLog(`${(l.timestamp || "").slice(11, 23)} ${l.instance || ""} ${l.text}`);
        } catch {
          appendLog(line);
        }
      }
    }
    if (!follow) appendLog("(end of the logs; tick Follow to keep reading)");
  } catch (err) {
    if (err.name !== "AbortError" && auth) appendLog("(the log stream stopped: " + err.message + ")");
  }
}

$("logs-follow").addEventListener("change", startLogs);
$("logs-clear").addEventListener("click", () => { $("logs").textContent = ""; });

// Charts -------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
const MIN_SPAN_MS = 30 * 1000;
const MAX_SPAN_MS = 10 * 60 * 1000;

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

/** A small line chart of the last `span` ms: `series` of {label, cls, points: [[time, value|null]]}. */
function chart(title, series, format, now, span) {
  const w = 300, h = 90, top = 4, bottom = h - 4;
  const values = series.flatMap((s) => s.points.map((p) => p[1]).filter((v) => v !== null));
  const highest = Math.max(...values, 0);
  const max = highest || 1;
  const box = svg("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", preserveAspectRatio: "none" });
  box.append(svg("line", { x1: 0, y1: bottom, x2: w, y2: bottom, class: "axis" }));
  const latest = [];
  for (const s of series) {
    let d = "";
    let pen = "M";
    for (const [t, v] of s.points) {
      if (v === null) { pen = "M"; continue; }
      const x = Math.max(0, w - ((now - t) / span) * w);
      const y = bottom - (v / max) * (bottom - top);
      d += `${pen}${x.toFixed(1)},${y.toFixed(1)} `;
      pen = "L";
    }
    // A lone point would be an invisible path: a dot then.
    if (d) box.append(svg("path", { d: d.includes("L") ? d : d + "l0.1,0", class: "line " + s.cls }));
    const last = s.points.length ? s.points[s.points.length - 1][1] : null;
    latest.push((s.label ? s.label + " " : "") + (last === null ? "–" : format(last)));
  }
  box.setAttribute("aria-label", `${title}, latest: ${latest.join(", ")}`);
  const caption = el("figcaption", {}, el("span", { text: title }), el("strong", { text: latest.join(" · ") }));
  const last = span < 90000 ? `${Math.round(span / 1000)} s` : `${Math.round(span / 60000)} min`;
  const scale = el("div", { class: "scale", text: `0 – ${format(max)} · last ${last}` });
  return el("figure", { class: "chart", "data-chart": title, "data-max": String(highest) }, caption, box, scale);
}

async function refreshCharts() {
  const name = current;
  try {
    const { ok, data } = await apiJSON("GET", "/system/function-history/" + enc(name));
    if (!ok || name !== current) return;
    const now = Date.now();
    // From the first point (a new function's chart is not a sliver), up to
    // the ten minutes the gateway keeps.
    const first = data.points.length ? data.points[0].time : now;
    const span = Math.min(MAX_SPAN_MS, Math.max(MIN_SPAN_MS, now - first + data.intervalSeconds * 1000));
    const at = (f) => data.points.map((p) => [p.time, f(p)]);
    const ms = (v) => (v * 1000).toFixed(v < 0.01 ? 2 : 0) + " ms";
    $("charts").replaceChildren(
      chart("Requests/s", [{ label: "", cls: "rps", points: at((p) => p.rps) }], (v) => v.toFixed(v < 10 ? 1 : 0), now, span),
      chart("Errors (5xx)", [{ label: "", cls: "errors", points: at((p) => p.errorRatio * 100) }], (v) => v.toFixed(0) + "%", now, span),
      chart("Latency", [
        { label: "p50", cls: "p50", points: at((p) => p.p50) },
        { label: "p99", cls: "p99", points: at((p) => p.p99) },
      ], ms, now, span),
      chart("Ready replicas", [{ label: "", cls: "ready", points: at((p) => p.ready) }], (v) => v.toFixed(0), now, span),
    );
  } catch {
    // The next refresh tries again; the function page shows API errors.
  }
}
