// The ferrofaas UI, part 3 of 4: the Usage view (#/usage): what functions
// used over a time range and what it costs at the namespaces' plans
// (/system/usage), charts per hour, a CSV download, and the quotas with
// what their periods have used (/system/quotas).
"use strict";

const USAGE_RANGES = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };

function openUsage() {
  show("usage");
  $("usage-csv-link").hidden = true;
  every(5000, refreshUsage);
}

/** The query of the form's choices (group_by aside). */
function usageQuery() {
  const ns = $("usage-all").checked ? "" : `&namespace=${enc(namespace)}`;
  return `from=${enc($("usage-range").value)}${ns}`;
}

function usageNumber(v, digits) {
  return Number(v || 0).toLocaleString("en", { maximumFractionDigits: digits });
}

function usageCells(row, r, currency) {
  const cells = row.cells;
  setText(cells[1], usageNumber(r.invocations, 0));
  setText(cells[2], usageNumber(r.errors, 0));
  setText(cells[3], usageNumber(r.gbSeconds, 4));
  setText(cells[4], usageNumber(r.cpuSeconds, 4));
  setText(cells[5], usageNumber(r.peakMemoryMib, 1));
  setText(cells[6], `${usageNumber(r.cost, 6)} ${currency}`);
}

function usageRowName(r) {
  if (r.period) return r.period.replace("T", " ").replace(":00:00Z", ":00 UTC").replace(" 00:00 UTC", "");
  if (r.function) return qualified(r.function, r.namespace);
  return r.namespace || "Total";
}

async function refreshUsage() {
  const group = $("usage-group").value;
  const { ok, status, data, error } = await apiJSON("GET", `/system/usage?${usageQuery()}&group_by=${group}`);
  if (!ok) {
    $("usage-error").textContent = status === 404 ? "Usage metering is off on this gateway (faas serve --no-usage)." : error.message;
    return;
  }
  $("usage-error").textContent = "";
  setText($("usage-key"), { function: "Function", namespace: "Namespace", hour: "Hour", day: "Day" }[group]);
  const cell = () => el("td");
  syncRows($("usage-rows"), data.rows, (r) => group + ":" + usageRowName(r),
    (r) => el("tr", { "data-row": usageRowName(r) }, el("th", { scope: "row", text: usageRowName(r) }), cell(), cell(), cell(), cell(), cell(), cell()),
    (row, r) => usageCells(row, r, data.currency));
  usageCells($("usage-total"), data.total, data.currency);
  $("no-usage").hidden = data.rows.length > 0;
  refreshUsageCharts(group === "hour" ? data : null);
  refreshQuotas();
}

async function refreshUsageCharts(hourly) {
  if (!hourly) {
    const { ok, data } = await apiJSON("GET", `/system/usage?${usageQuery()}&group_by=hour`);
    if (!ok) return;
    hourly = data;
  }
  const now = Date.now();
  const span = USAGE_RANGES[$("usage-range").value] || 86400e3;
  // Each hour a plateau from its start to its end (or now).
  const at = (f) => hourly.rows.flatMap((r) => {
    const t = Date.parse(r.period);
    return [[t, f(r)], [Math.min(t + 3600e3, now), f(r)]];
  });
  $("usage-charts").replaceChildren(
    chart("Invocations per hour", [{ label: "", cls: "rps", points: at((r) => r.invocations) }], (v) => usageNumber(v, 0), now, span),
    chart("GB-seconds per hour", [{ label: "", cls: "p50", points: at((r) => r.gbSeconds) }], (v) => usageNumber(v, 3), now, span),
    chart(`Cost per hour (${hourly.currency})`, [{ label: "", cls: "p99", points: at((r) => r.cost) }], (v) => usageNumber(v, 4), now, span),
  );
}

async function refreshQuotas() {
  const { ok, data } = await apiJSON("GET", "/system/quotas");
  if (!ok) return;
  const quotas = Object.entries(data).map(([ns, q]) => Object.assign({ namespace: ns }, q));
  const limit = (used, max, digits) => usageNumber(used, digits) + (max === undefined ? "" : ` of ${usageNumber(max, digits)}`);
  syncRows($("quotas"), quotas, (q) => q.namespace,
    (q) => el("tr", { "data-quota": q.namespace }, el("th", { scope: "row", text: q.namespace }), el("td"), el("td"), el("td"), el("td"), el("td")),
    (row, q) => {
      const c = row.cells;
      setText(c[1], q.quota.period);
      setText(c[2], limit(q.invocations, q.quota.invocations, 0));
      setText(c[3], limit(q.gbSeconds, q.quota.gbSeconds, 3));
      setText(c[4], limit(q.inFlight, q.quota.concurrent, 0));
      setText(c[5], q.periodEnd.replace("T", " ").replace("Z", " UTC"));
      const full = (q.quota.invocations !== undefined && q.invocations >= q.quota.invocations)
        || (q.quota.gbSeconds !== undefined && q.gbSeconds >= q.quota.gbSeconds);
      row.classList.toggle("over", full);
    });
  $("no-quotas").hidden = quotas.length > 0;
}

$("usage-form").addEventListener("change", refreshUsage);
$("usage-form").addEventListener("submit", (e) => e.preventDefault());

// The CSV as the gateway makes it, saved by the browser.
$("usage-csv").addEventListener("click", async () => {
  const resp = await api(`/system/usage?${usageQuery()}&group_by=${$("usage-group").value}`, { headers: { Accept: "text/csv" } });
  if (!resp.ok) {
    $("usage-error").textContent = `The download failed: the gateway answered ${resp.status}`;
    return;
  }
  const link = $("usage-csv-link");
  if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
  // Kept on the link too: what was saved, as a page script can read it
  // (the policy lets no script fetch a blob: URL).
  link.blob = await resp.blob();
  link.href = URL.createObjectURL(link.blob);
  link.hidden = false;
  link.click();
});
