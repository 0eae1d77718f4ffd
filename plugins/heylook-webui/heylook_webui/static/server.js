// The server view: health, models with their state and in-flight counts, load / unload / keep loaded, plugins, and
// plots of recent requests when the analytics plugin is installed.
import { api } from "./api.js";
import { lineChart, barChart } from "./plot.js";

const $ = (id) => document.getElementById(id);
let timer = null;

function cell(row, content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.append(content);
  else td.textContent = content ?? "";
  row.append(td);
  return td;
}

function button(label, title, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "small";
  b.textContent = label;
  b.setAttribute("aria-label", title);
  b.addEventListener("click", async () => {
    b.disabled = true;
    try {
      await action();
      note(`${title}: done`);
    } catch (error) {
      note(`${title}: ${error.message}`, true);
    } finally {
      b.disabled = false;
      refresh();
    }
  });
  return b;
}

// the outcome of the last action, kept apart from the health line that each refresh rewrites
function note(text, error = false) {
  const box = $("server-action");
  box.textContent = text;
  box.classList.toggle("error", error);
}

function status(text, error = false) {
  const box = $("server-status");
  box.textContent = text;
  box.classList.toggle("error", error);
}

// in-flight counts per model from the Prometheus text of /metrics (heylook_model_in_flight{model="..."} N)
function inFlight(text) {
  const counts = {};
  for (const line of text.split("\n")) {
    const match = /^heylook_model_in_flight\{model="((?:[^"\\]|\\.)*)"\}\s+([0-9.eE+-]+)/.exec(line);
    if (match) counts[match[1].replace(/\\(.)/g, "$1")] = Number(match[2]);
  }
  return counts;
}

// Keep a model loaded: the admin pin route, or on a server without one Ollama's way (an empty generate with
// keep_alive < 0 loads the model and stops its idle timer).
async function pin(model) {
  try {
    return await api(`/v1/admin/models/${encodeURIComponent(model)}/pin`, { method: "POST" }, { admin: true });
  } catch (error) {
    if (error.status !== 404 || error.message !== "no such route") throw error;
  }
  return api("/api/generate", { method: "POST", body: JSON.stringify({ model, prompt: "", keep_alive: -1 }) });
}

async function models() {
  const [list, metrics] = await Promise.all([
    api("/v1/models"),
    api("/metrics", {}, { raw: true })
      .then((r) => r.text())
      .catch(() => ""),
  ]);
  const flights = inFlight(metrics);
  const body = $("models-table").tBodies[0];
  body.replaceChildren();
  for (const model of list.data || []) {
    const row = document.createElement("tr");
    const name = document.createElement("span");
    name.textContent = model.id;
    if (model.pinned) name.dataset.pinned = "true";
    if (model.aliases?.length) name.title = `aliases: ${model.aliases.join(", ")}`;
    cell(row, name).className = "model-id";
    cell(row, model.provider);
    const state = document.createElement("span");
    state.className = `state state-${model.state}`;
    state.textContent = model.unavailable ? `unavailable: ${model.unavailable}` : model.state;
    cell(row, state);
    cell(row, flights[model.id] != null ? String(flights[model.id]) : "–");
    cell(row, (model.capabilities || []).join(", "));
    const actions = document.createElement("span");
    actions.className = "actions";
    const id = encodeURIComponent(model.id);
    actions.append(
      button("Load", `load ${model.id}`, () => api(`/v1/admin/models/${id}/load`, { method: "POST" }, { admin: true })),
      button("Unload", `unload ${model.id}`, () =>
        api(`/v1/admin/models/${id}/unload`, { method: "POST" }, { admin: true }),
      ),
      model.pinned
        ? button("Unpin", `unpin ${model.id}`, () =>
            api(`/v1/admin/models/${id}/unpin`, { method: "POST" }, { admin: true }),
          )
        : button("Pin", `pin ${model.id}`, () => pin(model.id)),
    );
    cell(row, actions);
    body.append(row);
  }
}

async function plugins() {
  const report = await api("/-/plugins");
  const body = $("plugins-table").tBodies[0];
  body.replaceChildren();
  for (const plugin of report.plugins || []) {
    const row = document.createElement("tr");
    cell(row, plugin.name);
    cell(row, [plugin.distribution, plugin.version].filter(Boolean).join(" "));
    const state = document.createElement("span");
    state.className = `state state-${plugin.status}`;
    state.textContent = plugin.status;
    cell(row, state);
    cell(row, plugin.error || "").className = plugin.error ? "error" : "";
    body.append(row);
  }
  return report;
}

async function analytics() {
  const section = $("analytics");
  let body;
  try {
    body = await api("/-/analytics/recent?limit=500");
  } catch {
    section.hidden = true; // the analytics plugin is not installed
    return;
  }
  section.hidden = false;
  const plots = $("plots");
  if (!body.enabled) {
    plots.textContent = `Analytics is installed but not recording: ${body.reason || "off"}.`;
    return;
  }
  const rows = (body.data || []).map((r) => ({ ...r, t: Date.parse(`${r.ts}Z`.replace(/ZZ$/, "Z")) })).reverse();
  if (!rows.length) {
    plots.textContent = "No requests recorded yet.";
    return;
  }
  const byModel = (field) => {
    const series = {};
    for (const r of rows) if (r[field] != null) (series[r.model_id] ||= []).push([r.t, r[field]]);
    return series;
  };
  const perMinute = {};
  for (const r of rows) {
    const minute = Math.floor(r.t / 60000) * 60000;
    ((perMinute[r.model_id] ||= {})[minute] ||= 0);
    perMinute[r.model_id][minute] += 1;
  }
  plots.replaceChildren(
    lineChart("Tokens per second", byModel("tokens_per_s"), "tokens/s"),
    lineChart("Time to first token", byModel("ttft_ms"), "ms"),
    barChart("Requests per minute", perMinute),
  );
}

export async function refresh() {
  const health = await api("/health").catch((error) => ({ status: error.message }));
  const loaded = health.loaded ? `, loaded: ${health.loaded.join(", ") || "none"}` : "";
  const failed = health.failed_plugins?.length ? `, failed plugins: ${health.failed_plugins.join(", ")}` : "";
  status(`Health: ${health.status}${loaded}${failed}`, health.status !== "ok");
  await Promise.all([
    models().catch((error) => status(`Models: ${error.message}`, true)),
    plugins().catch((error) => status(`Plugins: ${error.message}`, true)),
    analytics(),
  ]);
}

export function showServer() {
  refresh();
  clearInterval(timer);
  timer = setInterval(() => {
    if (!document.hidden) refresh();
  }, 5000);
}

export function stopServer() {
  clearInterval(timer);
  timer = null;
}

document.getElementById("refresh").addEventListener("click", () => refresh());
