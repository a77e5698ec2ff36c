// Switchboard operator console: the queue, a conversation with its history and visitor,
// claim, reply, release, close, all live (docs/handoff.md). Plain JS, no build step; it
// speaks the operator REST API of this server with the token the operator signs in with.

const API = "/api/operator/v1";
const STORE = "switchboard.console";
const RECONNECT_MS = 1000;

const $ = (id) => document.getElementById(id);
const state = { token: "", name: "", selected: null, queue: new Map(), events: null,
                lastEventId: null, detail: null };

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  let url = API + path;
  if (method === "GET" && state.name) {
    url += (url.includes("?") ? "&" : "?") + new URLSearchParams({ operator_name: state.name });
  }
  const init = { method, headers };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    const named = state.name ? { operator_name: state.name } : {};
    init.body = JSON.stringify({ ...(body || {}), ...named });
  }
  const response = await fetch(url, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error((data.error && data.error.message) || `HTTP ${response.status}`);
    error.status = response.status;
    error.code = data.error && data.error.code;
    throw error;
  }
  return data;
}

// -- sign in ------------------------------------------------------------------------------

async function signIn(token, name) {
  state.token = token;
  state.name = name;
  await api("GET", "/conversations");  // refuses a bad or widget key (401 / 403)
  sessionStorage.setItem(STORE, JSON.stringify({ token, name }));
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  $("whoami").textContent = name ? `Signed in as ${name}` : "Signed in";
  await refreshQueue();
  follow();
}

function signOut() {
  sessionStorage.removeItem(STORE);
  if (state.events) state.events.abort();
  location.reload();
}

// -- the queue ----------------------------------------------------------------------------

async function refreshQueue() {
  const data = await api("GET", "/conversations?state=waiting,human");
  state.queue = new Map(data.conversations.map((c) => [c.conversation_id, c]));
  renderQueue();
}

function renderQueue() {
  const list = $("queue");
  list.replaceChildren();
  for (const c of state.queue.values()) {
    const item = el("li", { "data-conversation": c.conversation_id, "data-state": c.state });
    if (c.conversation_id === state.selected) item.classList.add("selected");
    if (c.unread) item.classList.add("unread");
    const button = el("button", { type: "button" });
    button.append(el("span", { class: `badge ${c.state}` }, c.state), " ",
                  c.user_id || "visitor", " · ", c.team || "");
    if (c.operator) button.append(" · ", c.operator.name);
    button.addEventListener("click", () => select(c.conversation_id));
    item.append(button);
    list.append(item);
  }
  $("queue-empty").hidden = state.queue.size > 0;
}

// -- one conversation ---------------------------------------------------------------------

async function select(conversationId) {
  state.selected = conversationId;
  const queued = state.queue.get(conversationId);
  if (queued) queued.unread = false;
  renderQueue();
  state.detail = await api("GET", `/conversations/${conversationId}`);
  renderDetail();
}

function renderMessage(message) {
  const item = el("li", { class: message.role, "data-role": message.role });
  const who = { user: "Visitor", assistant: "Bot", operator: message.operator_name || "Operator" };
  item.append(el("span", { class: "who" }, who[message.role] || message.role));
  item.append(document.createTextNode(message.text));
  $("messages").append(item);
  $("messages").scrollTop = $("messages").scrollHeight;
}

function renderDetail() {
  const d = state.detail;
  $("conversation").hidden = !d;
  if (!d) return;
  $("title").textContent = `${d.user_id || "Visitor"} · ${d.session_id}`;
  $("state").textContent = d.state + (d.operator ? ` (${d.operator.name})` : "");
  $("state").dataset.state = d.state;
  $("claim").disabled = d.state !== "waiting";
  $("release").disabled = !["waiting", "human"].includes(d.state);
  $("close").disabled = !["waiting", "human"].includes(d.state);
  $("reply-text").disabled = d.state !== "human";
  const facts = $("visitor-facts");
  facts.replaceChildren();
  const add = (k, v) => { facts.append(el("dt", {}, k), el("dd", {}, v)); };
  add("User", d.user_id || "anonymous");
  add("Team", d.team || "-");
  add("Traits", JSON.stringify(d.traits, null, 2));
  add("Context", JSON.stringify(d.context, null, 2));
  $("messages").replaceChildren();
  for (const m of d.messages) if (m.text) renderMessage(m);
  $("action-error").textContent = "";
}

async function act(action) {
  $("action-error").textContent = "";
  try {
    await api("POST", `/conversations/${state.selected}/${action}`);
    await select(state.selected);
  } catch (error) {
    $("action-error").textContent = error.message;
  }
}

async function reply(event) {
  event.preventDefault();
  const text = $("reply-text").value;
  if (!text.trim() || !state.selected) return;
  $("action-error").textContent = "";
  try {
    await api("POST", `/conversations/${state.selected}/messages`, { text });
    $("reply-text").value = "";
  } catch (error) {
    $("action-error").textContent = error.message;
  }
}

// -- live: GET /api/operator/v1/events ----------------------------------------------------

function onEvent(kind, data) {
  const id = data.conversation_id;
  if (kind === "state") {
    refreshQueue().catch(() => undefined);
    if (id === state.selected) select(id).catch(() => undefined);
    return;
  }
  if (kind !== "message") return;
  if (id === state.selected && state.detail) {
    const message = { role: data.role, text: data.text,
                      operator_name: data.operator && data.operator.name };
    state.detail.messages.push(message);
    renderMessage(message);
  } else if (state.queue.has(id)) {
    state.queue.get(id).unread = true;
    renderQueue();
  }
}

async function follow() {
  for (;;) {
    state.events = new AbortController();
    const headers = { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" };
    if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
    const query = state.name ? `?${new URLSearchParams({ operator_name: state.name })}` : "";
    try {
      const response = await fetch(`${API}/events${query}`,
                                   { headers, signal: state.events.signal });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      document.body.dataset.live = "true";
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      let fields = {};
      let data = [];
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let newline;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline).replace(/\r$/, "");
          buffer = buffer.slice(newline + 1);
          if (line === "") {
            if (data.length) {
              if (fields.id) state.lastEventId = fields.id;
              try { onEvent(fields.event || "message", JSON.parse(data.join("\n"))); }
              catch { /* a malformed event is skipped */ }
            }
            fields = {};
            data = [];
          } else if (!line.startsWith(":")) {
            const colon = line.indexOf(":");
            const name = colon < 0 ? line : line.slice(0, colon);
            let value = colon < 0 ? "" : line.slice(colon + 1);
            if (value.startsWith(" ")) value = value.slice(1);
            if (name === "data") data.push(value); else fields[name] = value;
          }
        }
      }
    } catch (error) {
      if (error && error.name === "AbortError") return;
    }
    document.body.dataset.live = "false";
    await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
  }
}

// -- wiring -------------------------------------------------------------------------------

$("sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  $("sign-in-error").textContent = "";
  signIn($("token").value.trim(), $("name").value.trim()).catch((error) => {
    $("sign-in-error").textContent = error.status === 403
      ? "This key cannot use the operator console (use a secret key or an operator token)."
      : error.message;
  });
});
$("sign-out").addEventListener("click", signOut);
$("claim").addEventListener("click", () => act("claim"));
$("release").addEventListener("click", () => act("release"));
$("close").addEventListener("click", () => act("close"));
$("reply").addEventListener("submit", reply);

const saved = JSON.parse(sessionStorage.getItem(STORE) || "null");
if (saved && saved.token) signIn(saved.token, saved.name || "").catch(() => signOut());
