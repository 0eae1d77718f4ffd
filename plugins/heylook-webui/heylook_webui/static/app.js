// heylook's page: the chat view. The server view lives in server.js.
import { api, ApiError, readEvents, setApiKey, setAsker, apiKey } from "./api.js";
import { renderMarkdown } from "./md.js";
import { showServer, stopServer } from "./server.js";

const $ = (id) => document.getElementById(id);
const STORE = "heylook.conversations";
const CURRENT = "heylook.current";
const SETTINGS = ["temperature", "top_p", "max_tokens", "seed"];

let models = [];
let conversations = [];
let current = null;
let streaming = null; // {controller, conversation} while a reply streams
let attachments = []; // data URLs for the next message

// -- dialogs and notices ------------------------------------------------------------------------------------------

export function ask(title, text, label, { value = "", secret = true } = {}) {
  const dialog = $("ask");
  $("ask-title").textContent = title;
  $("ask-text").textContent = text;
  $("ask-label").textContent = label;
  const input = $("ask-input");
  input.type = secret ? "password" : "text";
  input.value = value;
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => resolve(dialog.returnValue === "ok" && input.value.trim() ? input.value.trim() : null),
      { once: true },
    );
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
  });
}

let toastTimer = null;
export function toast(message) {
  const box = $("toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    box.hidden = true;
  }, 6000);
}

// -- conversations in localStorage ---------------------------------------------------------------------------------

function newId() {
  return Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
}

function load() {
  try {
    conversations = JSON.parse(localStorage.getItem(STORE) || "[]");
  } catch {
    conversations = [];
  }
  if (!Array.isArray(conversations)) conversations = [];
  current = conversations.find((c) => c.id === localStorage.getItem(CURRENT)) || conversations[0] || null;
  if (!current) current = create();
}

function save() {
  try {
    localStorage.setItem(STORE, JSON.stringify(conversations));
    if (current) localStorage.setItem(CURRENT, current.id);
  } catch (error) {
    toast(`Could not keep the conversation in this browser: ${error.message} (images take much room)`);
  }
}

function create() {
  const conversation = {
    id: newId(),
    title: "New chat",
    model: current?.model || "",
    system: "",
    settings: {},
    messages: [],
    created: Date.now(),
  };
  conversations.unshift(conversation);
  return conversation;
}

function renderConversations() {
  const list = $("conversations");
  list.replaceChildren();
  for (const conversation of conversations) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "conversation-item";
    button.textContent = conversation.title || "Untitled";
    button.setAttribute("aria-current", conversation === current ? "true" : "false");
    button.addEventListener("click", () => select(conversation));
    item.append(button);
    list.append(item);
  }
}

function select(conversation) {
  current = conversation;
  save();
  renderConversations();
  renderSettings();
  renderMessages();
  document.body.classList.remove("sidebar-open");
  $("toggle-sidebar").setAttribute("aria-expanded", "false");
}

// -- models ---------------------------------------------------------------------------------------------------------

async function loadModels() {
  const select = $("model");
  try {
    const body = await api("/v1/models");
    models = body.data || [];
  } catch (error) {
    models = [];
    toast(`Could not list models: ${error.message}`);
  }
  select.replaceChildren();
  for (const model of models) {
    const option = document.createElement("option");
    option.value = model.id;
    option.textContent = model.unavailable ? `${model.id} (unavailable)` : model.id;
    select.append(option);
  }
  if (!models.length) {
    const option = document.createElement("option");
    option.value = "";
    option.textContent = "no models";
    select.append(option);
  }
  if (current.model && models.some((m) => m.id === current.model)) select.value = current.model;
  else if (models.length) current.model = models[0].id;
  showModel();
}

function modelCard() {
  return models.find((m) => m.id === $("model").value) || null;
}

function showModel() {
  const card = modelCard();
  const box = $("capabilities");
  box.replaceChildren();
  for (const capability of card?.capabilities || []) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = capability;
    box.append(badge);
  }
  const vision = (card?.capabilities || []).includes("vision");
  $("attach-label").hidden = !vision;
  if (!vision && attachments.length) {
    attachments = [];
    renderAttachments();
  }
  const honoured = new Set([...(card?.parameters || []), "max_tokens"]); // max_tokens: every model takes it
  for (const name of [...SETTINGS, "enable_thinking"]) {
    const input = $(name);
    const off = card !== null && !honoured.has(name);
    input.disabled = off;
    input.title = off ? `${card.id} does not take ${name}` : "";
  }
}

// -- settings -------------------------------------------------------------------------------------------------------

function renderSettings() {
  $("system").value = current.system || "";
  for (const name of SETTINGS) $(name).value = current.settings?.[name] ?? "";
  $("enable_thinking").checked = Boolean(current.settings?.enable_thinking);
  if (current.model && models.some((m) => m.id === current.model)) $("model").value = current.model;
  showModel();
}

function readSettings() {
  current.system = $("system").value;
  current.settings = {};
  for (const name of SETTINGS) {
    const value = $(name).value.trim();
    if (value !== "") current.settings[name] = Number(value);
  }
  if ($("enable_thinking").checked) current.settings.enable_thinking = true;
  save();
}

// -- messages -------------------------------------------------------------------------------------------------------

function stats(message) {
  const s = message.stats;
  if (!s) return "";
  const parts = [];
  if (s.completion_tokens != null) parts.push(`${s.completion_tokens} tokens`);
  if (s.tokens_per_s != null) parts.push(`${s.tokens_per_s.toFixed(1)} tokens/s`);
  if (s.ttft_ms != null) parts.push(`first token ${Math.round(s.ttft_ms)} ms`);
  if (s.finish_reason) parts.push(s.finish_reason);
  return parts.join(" · ");
}

function messageNode(message) {
  const node = document.createElement("article");
  node.className = `message ${message.role}`;
  const who = document.createElement("h3");
  who.className = "who";
  who.textContent = message.role === "user" ? "You" : message.model || "Assistant";
  node.append(who);
  if (message.reasoning) {
    const details = document.createElement("details");
    details.className = "reasoning";
    const summary = document.createElement("summary");
    summary.textContent = message.pending && !message.content ? "Reasoning…" : "Reasoning";
    const body = document.createElement("div");
    body.className = "reasoning-text";
    body.textContent = message.reasoning; // shown as plain text
    details.append(summary, body);
    node.append(details);
  }
  for (const url of message.images || []) {
    const image = document.createElement("img");
    image.className = "attached";
    image.src = url;
    image.alt = "attached image";
    node.append(image);
  }
  const body = document.createElement("div");
  body.className = "content";
  if (message.role === "user") body.textContent = message.content;
  else body.innerHTML = renderMarkdown(message.content || ""); // escaped first, then a fixed set of tags (md.js)
  node.append(body);
  if (message.error) {
    const error = document.createElement("p");
    error.className = "error";
    error.setAttribute("role", "alert");
    error.textContent = message.error;
    node.append(error);
  }
  const line = stats(message) || (message.pending ? "…" : "");
  if (line) {
    const foot = document.createElement("p");
    foot.className = "stats";
    foot.textContent = line;
    node.append(foot);
  }
  return node;
}

function renderMessages() {
  const box = $("messages");
  box.replaceChildren(...current.messages.map(messageNode));
  if (!current.messages.length) {
    const empty = document.createElement("p");
    empty.className = "empty muted";
    empty.textContent = "Ask something. Replies stream in as they are made.";
    box.append(empty);
  }
  box.scrollTop = box.scrollHeight;
}

function updateLast() {
  const box = $("messages");
  const last = box.lastElementChild;
  const message = current.messages[current.messages.length - 1];
  const node = messageNode(message);
  if (last && last.classList.contains("message")) last.replaceWith(node);
  else box.append(node);
  const near = box.scrollHeight - box.scrollTop - box.clientHeight < 120;
  if (near) box.scrollTop = box.scrollHeight;
}

function wire(message) {
  if (message.role !== "user" || !message.images?.length) return { role: message.role, content: message.content };
  return {
    role: "user",
    content: [
      { type: "text", text: message.content },
      ...message.images.map((url) => ({ type: "image_url", image_url: { url } })),
    ],
  };
}

async function send(text) {
  readSettings();
  const conversation = current;
  const model = $("model").value;
  conversation.model = model;
  conversation.messages.push({ role: "user", content: text, images: attachments.length ? attachments : undefined });
  attachments = [];
  renderAttachments();
  if (conversation.title === "New chat") {
    conversation.title = text.slice(0, 40) || "Image";
    renderConversations();
  }
  const history = conversation.messages.filter((m) => !m.error || m.content).map(wire);
  if (conversation.system.trim()) history.unshift({ role: "system", content: conversation.system });
  const reply = { role: "assistant", model, content: "", reasoning: "", pending: true };
  conversation.messages.push(reply);
  save();
  renderMessages();

  const controller = new AbortController();
  streaming = { controller, conversation };
  setBusy(true);
  const started = performance.now();
  let first = null;
  let usage = null;
  const body = {
    model,
    messages: history,
    stream: true,
    stream_options: { include_usage: true },
    ...conversation.settings,
  };
  try {
    const response = await api(
      "/v1/chat/completions",
      { method: "POST", body: JSON.stringify(body), signal: controller.signal },
      { raw: true },
    );
    await readEvents(response, (event) => {
      if (event.error) throw new ApiError(event.error.status || 500, event.error.message || JSON.stringify(event.error));
      if (event.usage) usage = event.usage;
      for (const choice of event.choices || []) {
        const delta = choice.delta || {};
        if ((delta.content || delta.reasoning_content) && first === null) first = performance.now();
        if (delta.content) reply.content += delta.content;
        if (delta.reasoning_content) reply.reasoning += delta.reasoning_content;
        if (choice.finish_reason) reply.finish_reason = choice.finish_reason;
      }
      if (conversation === current) updateLast();
    });
  } catch (error) {
    if (error.name === "AbortError") reply.stopped = true;
    else reply.error = error.message || String(error);
  } finally {
    controller.abort(); // releases the connection if the stream ended on an error event
    const ended = performance.now();
    reply.pending = false;
    reply.stats = {
      ttft_ms: first !== null ? first - started : null,
      completion_tokens: usage?.completion_tokens ?? null,
      prompt_tokens: usage?.prompt_tokens ?? null,
      tokens_per_s: usage && first !== null && ended > first ? usage.completion_tokens / ((ended - first) / 1000) : null,
      finish_reason: reply.stopped ? "stopped" : reply.finish_reason || null,
    };
    delete reply.finish_reason;
    if (!reply.reasoning) delete reply.reasoning;
    streaming = null;
    setBusy(false);
    save();
    if (conversation === current) updateLast();
  }
}

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  $("composer").setAttribute("aria-busy", busy ? "true" : "false");
}

// -- attachments ----------------------------------------------------------------------------------------------------

function renderAttachments() {
  const box = $("attachments");
  box.replaceChildren();
  attachments.forEach((url, index) => {
    const figure = document.createElement("span");
    figure.className = "thumb";
    const image = document.createElement("img");
    image.src = url;
    image.alt = `attachment ${index + 1}`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "ghost";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `remove attachment ${index + 1}`);
    remove.addEventListener("click", () => {
      attachments.splice(index, 1);
      renderAttachments();
    });
    figure.append(image, remove);
    box.append(figure);
  });
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// -- views ----------------------------------------------------------------------------------------------------------

function showView(name) {
  const server = name === "server";
  $("view-chat").hidden = server;
  $("view-server").hidden = !server;
  $("tab-chat").setAttribute("aria-pressed", String(!server));
  $("tab-server").setAttribute("aria-pressed", String(server));
  if (server) showServer();
  else stopServer();
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
}

// -- wiring ---------------------------------------------------------------------------------------------------------

function start() {
  setAsker((title, text, label) => ask(title, text, label));
  load();
  renderConversations();
  renderSettings();
  renderMessages();
  loadModels();

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("prompt").value.trim();
    if ((!text && !attachments.length) || streaming) return;
    $("prompt").value = "";
    send(text);
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => streaming?.controller.abort());
  $("model").addEventListener("change", () => {
    current.model = $("model").value;
    save();
    showModel();
  });
  for (const id of ["system", ...SETTINGS, "enable_thinking"]) $(id).addEventListener("change", readSettings);
  $("attach").addEventListener("change", async (event) => {
    for (const file of event.target.files) {
      try {
        attachments.push(await readFile(file));
      } catch (error) {
        toast(`Could not read ${file.name}: ${error}`);
      }
    }
    event.target.value = "";
    renderAttachments();
  });
  $("new-chat").addEventListener("click", () => select(create()));
  $("rename-chat").addEventListener("click", async () => {
    const title = await ask("Rename", "A name for this conversation.", "Name", { value: current.title, secret: false });
    if (title) {
      current.title = title;
      save();
      renderConversations();
    }
  });
  $("delete-chat").addEventListener("click", () => {
    if (!confirm(`Delete "${current.title}"?`)) return;
    if (streaming?.conversation === current) streaming.controller.abort();
    conversations = conversations.filter((c) => c !== current);
    current = conversations[0] || create();
    select(current);
  });
  $("export-chat").addEventListener("click", () => {
    const blob = new Blob([JSON.stringify(current, null, 2)], { type: "application/json" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `${(current.title || "chat").replace(/[^\w.-]+/g, "_").slice(0, 60)}.json`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  });
  $("toggle-sidebar").addEventListener("click", () => {
    const open = document.body.classList.toggle("sidebar-open");
    $("toggle-sidebar").setAttribute("aria-expanded", String(open));
  });
  $("messages").addEventListener("click", async (event) => {
    const button = event.target.closest("button.copy");
    if (!button) return;
    const code = button.parentElement.querySelector("code")?.textContent || "";
    try {
      await navigator.clipboard.writeText(code);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed";
    }
    setTimeout(() => {
      button.textContent = "Copy";
    }, 1500);
  });
  $("key-button").addEventListener("click", async () => {
    const value = await ask("API key", apiKey() ? "Replace the key kept for this tab (empty: forget it)." : "A key for servers that require one; kept for this tab only.", "API key");
    setApiKey(value);
    loadModels();
  });
  $("tab-chat").addEventListener("click", () => showView("chat"));
  $("tab-server").addEventListener("click", () => showView("server"));
  window.addEventListener("storage", (event) => {
    if (event.key === STORE && !streaming) {
      load();
      renderConversations();
      renderMessages();
    }
  });
  showView(location.hash === "#server" ? "server" : "chat");
}

start();
