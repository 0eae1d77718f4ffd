// Calls to the server, with the API key the page asked for (kept in sessionStorage: for this tab's session only).

const KEY = "heylook.apiKey";
const ADMIN_KEY = "heylook.adminKey";

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let asker = null; // (title, text, label) => Promise<string|null>, set by the page
export function setAsker(fn) {
  asker = fn;
}

export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setApiKey(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

// The server's own message from an error response ({"error": {"message"}}), never a blank.
export async function errorOf(response) {
  let message = "";
  let code = null;
  try {
    const text = await response.text();
    try {
      const body = JSON.parse(text);
      const error = body.error ?? body;
      message = typeof error === "string" ? error : error.message || JSON.stringify(error);
      code = error.code ?? null;
    } catch {
      message = text.trim();
    }
  } catch {
    /* the body could not be read */
  }
  if (!message) message = `${response.status} ${response.statusText || "error"}`;
  return new ApiError(response.status, message, code);
}

let asking = null; // one prompt at a time, shared by the calls that got 401 together

async function askKey(admin, reason) {
  if (!asker) return null;
  if (!asking) {
    const title = admin ? "Admin key" : "API key";
    const text = admin
      ? `This action needs the server's admin key. ${reason}`
      : `The server needs an API key. ${reason} The key is kept for this browser tab only.`;
    asking = asker(title, text, admin ? "Admin key" : "API key").finally(() => {
      asking = null;
    });
  }
  return asking;
}

// fetch with the key; on 401 (or 403 for admin routes) ask once for a key and try again with it.
export async function api(path, options = {}, { admin = false, raw = false } = {}) {
  const storageKey = admin ? ADMIN_KEY : KEY;
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const headers = new Headers(options.headers || {});
    const key = sessionStorage.getItem(storageKey);
    if (key) headers.set("Authorization", `Bearer ${key}`);
    // the server refuses a POST from a web page without a JSON content type (even with no body)
    if ((options.body || (options.method || "GET") !== "GET") && !headers.has("Content-Type")) {
      headers.set("Content-Type", "application/json");
    }
    const response = await fetch(path, { ...options, headers });
    const refused = response.status === 401 || (admin && response.status === 403);
    if (refused && attempt === 0) {
      const error = await errorOf(response);
      const value = await askKey(admin, error.message);
      if (!value) throw error;
      sessionStorage.setItem(storageKey, value);
      continue;
    }
    if (!response.ok) throw await errorOf(response);
    return raw ? response : response.json();
  }
  throw new ApiError(401, "the key was refused");
}

// Read a server-sent event stream (Chat Completions), calling onEvent with each parsed data payload.
export async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      const data = frame
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (!data) continue; // a comment (": ping") or an empty frame
      if (data === "[DONE]") return;
      onEvent(JSON.parse(data));
    }
  }
}
