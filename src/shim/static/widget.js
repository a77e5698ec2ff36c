// Switchboard chat widget: one tag embeds it.
//
//   <script src="https://HOST/widget.js" data-key="ab_live_…" defer></script>
//
// Optional: data-user-id, data-user-token, data-agent, data-theme ("light" | "dark"),
// data-title, data-base-url (where the API is, default: where this file came from).
// Defines <switchboard-chat> (open shadow root) and window.Switchboard {open, close, send}.
// No inline script, no eval, no innerHTML: model and user text only ever reach the page
// through textContent and DOM nodes built here (see renderMarkdown).
(() => {
  "use strict";
  if (window.customElements.get("switchboard-chat")) return;

  const script = document.currentScript;
  const scriptUrl = new URL(script && script.src ? script.src : "widget.js", location.href);
  const config = script ? { ...script.dataset } : {};
  const assetUrl = (name) => new URL(name, scriptUrl).href;

  // The session id is stored per key and agent; after a reload the widget shows the last
  // MAX_HISTORY messages of the conversation, read from the server.
  const MAX_HISTORY = 50;
  const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);
  const ESCALATION_MESSAGE = "I'd like to talk to a person.";

  let sdk = null;
  const loadSdk = () => (sdk = sdk || import(assetUrl("sdk.js")));

  // ---- safe Markdown subset -------------------------------------------------------------
  // Paragraphs, line breaks, bullet and numbered lists, **bold**, `code`, fenced code,
  // [links](https://…) and bare http(s) URLs. Everything else stays literal text.

  function safeHref(raw) {
    try {
      const url = new URL(raw, location.href);
      return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
    } catch {
      return null;
    }
  }

  function link(text, href) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    a.target = "_blank";
    a.rel = "noopener noreferrer nofollow";
    return a;
  }

  const INLINE = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(\[[^\]\n]+\]\([^)\s]+\))|(https?:\/\/[^\s<>()"']+[^\s<>()"'.,;:!?])/g;

  function appendInline(parent, text) {
    let last = 0;
    for (const match of text.matchAll(INLINE)) {
      if (match.index > last) parent.append(text.slice(last, match.index));
      const [token, code, bold, mdLink, bare] = match;
      if (code) {
        const el = document.createElement("code");
        el.textContent = code.slice(1, -1);
        parent.append(el);
      } else if (bold) {
        const el = document.createElement("strong");
        el.textContent = bold.slice(2, -2);
        parent.append(el);
      } else if (mdLink) {
        const close = mdLink.indexOf("](");
        const label = mdLink.slice(1, close);
        const href = safeHref(mdLink.slice(close + 2, -1));
        parent.append(href ? link(label, href) : label);
      } else if (bare) {
        const href = safeHref(bare);
        parent.append(href ? link(bare, href) : bare);
      } else {
        parent.append(token);
      }
      last = match.index + token.length;
    }
    if (last < text.length) parent.append(text.slice(last));
  }

  function appendLines(parent, lines) {
    lines.forEach((line, i) => {
      if (i) parent.append(document.createElement("br"));
      appendInline(parent, line);
    });
  }

  const BULLET = /^\s*[-*•]\s+/;
  const NUMBER = /^\s*\d{1,3}[.)]\s+/;

  function renderMarkdown(text) {
    const out = document.createDocumentFragment();
    const lines = String(text).replace(/\r\n?/g, "\n").split("\n");
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (!line.trim()) { i += 1; continue; }
      if (line.trimStart().startsWith("```")) {
        const body = [];
        i += 1;
        while (i < lines.length && !lines[i].trimStart().startsWith("```")) body.push(lines[i++]);
        i += 1;
        const pre = document.createElement("pre");
        const code = document.createElement("code");
        code.textContent = body.join("\n");
        pre.append(code);
        out.append(pre);
        continue;
      }
      const kind = BULLET.test(line) ? BULLET : NUMBER.test(line) ? NUMBER : null;
      if (kind) {
        const list = document.createElement(kind === BULLET ? "ul" : "ol");
        while (i < lines.length && kind.test(lines[i])) {
          const item = document.createElement("li");
          appendInline(item, lines[i].replace(kind, ""));
          list.append(item);
          i += 1;
        }
        out.append(list);
        continue;
      }
      const para = [];
      while (i < lines.length && lines[i].trim() && !BULLET.test(lines[i])
             && !NUMBER.test(lines[i]) && !lines[i].trimStart().startsWith("```")) {
        para.push(lines[i++]);
      }
      const p = document.createElement("p");
      appendLines(p, para);
      out.append(p);
    }
    return out;
  }

  // ---- the element ----------------------------------------------------------------------

  function el(tag, attrs = {}, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // A speech bubble, drawn rather than an emoji (not every system has an emoji font).
  function chatIcon() {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "28");
    svg.setAttribute("height", "28");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const path = document.createElementNS(ns, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute("fill-rule", "evenodd");
    path.setAttribute("d", "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm3 6.5a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01z");
    svg.append(path);
    return svg;
  }

  function describeError(err) {
    const code = err && err.code ? err.code : "error";
    if (code === "origin_not_allowed") {
      return "This website is not allowed to use this chat (origin_not_allowed).";
    }
    if (err && err.retryAfter) {
      return `Too many messages right now: please try again in ${err.retryAfter} s (${code}).`;
    }
    if (code === "connection_lost") return "The connection was lost. Please try again.";
    return `Sorry, something went wrong (${code}).`;
  }

  class SwitchboardChat extends HTMLElement {
    constructor() {
      super();
      this.root = this.attachShadow({ mode: "open" });
      this.history = [];
      this.queue = Promise.resolve();
      this.controller = null;
      this.returnFocus = null;
    }

    option(name) {
      return this.getAttribute(name) ?? config[name.replace(/-(\w)/g, (_, c) => c.toUpperCase())]
        ?? null;
    }

    get storageKey() {
      return `switchboard:${this.option("key") || ""}:${this.option("agent") || ""}`;
    }

    connectedCallback() {
      if (this.panel) return;
      const theme = this.option("theme");
      if (theme && !this.hasAttribute("theme")) this.setAttribute("theme", theme);
      const title = this.option("title") || "Chat with us";
      const style = el("link", { rel: "stylesheet", href: assetUrl("widget.css") });
      this.launcher = el("button", {
        type: "button", class: "launcher", part: "launcher", "aria-expanded": "false",
        "aria-controls": "sb-panel", "aria-label": `Open chat: ${title}`,
      });
      this.launcher.append(chatIcon());
      this.panel = el("section", {
        id: "sb-panel", class: "panel", part: "panel", role: "dialog",
        "aria-labelledby": "sb-title",
      });
      this.panel.hidden = true;
      const header = el("header");
      header.append(el("h2", { id: "sb-title" }, title));
      this.closeButton = el("button", { type: "button", class: "close",
                                        "aria-label": "Close chat" }, "×");
      header.append(this.closeButton);
      // The transcript: a log, but not live itself (a streaming answer would be read out
      // word by word); finished messages are announced through `announcer`.
      this.log = el("div", { class: "log", role: "log", "aria-live": "off", tabindex: "0",
                             "aria-label": "Conversation" });
      this.announcer = el("div", { class: "sr-only", role: "status", "aria-live": "polite",
                                   "aria-atomic": "true" });
      this.form = el("form", { class: "composer" });
      const label = el("label", { for: "sb-input", class: "sr-only" }, "Your message");
      this.input = el("textarea", { id: "sb-input", rows: "1", maxlength: "10000",
                                    placeholder: "Ask a question…", autocomplete: "off" });
      this.sendButton = el("button", { type: "submit", class: "send" }, "Send");
      this.form.append(label, this.input, this.sendButton);
      this.panel.append(header, this.log, this.form, this.announcer);
      this.root.append(style, this.launcher, this.panel);

      this.launcher.addEventListener("click", () => (this.panel.hidden ? this.open() : this.close()));
      this.closeButton.addEventListener("click", () => this.close());
      this.panel.addEventListener("keydown", (event) => {
        if (event.key === "Escape") { event.preventDefault(); this.close(); }
      });
      this.input.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          this.form.requestSubmit();
        }
      });
      this.form.addEventListener("submit", (event) => {
        event.preventDefault();
        if (this.controller) { this.controller.abort(); return; }
        const text = this.input.value.trim();
        if (!text) return;
        this.input.value = "";
        this.send(text).catch(() => undefined);
      });
      this.restore();
    }

    // -- opening and closing ------------------------------------------------------------

    open() {
      if (!this.panel.hidden) return;
      const active = document.activeElement;
      this.returnFocus = active && active !== document.body && active !== this ? active : null;
      this.panel.hidden = false;
      this.launcher.setAttribute("aria-expanded", "true");
      this.launcher.setAttribute("aria-label", "Close chat");
      this.scrollDown();
      this.input.focus();
    }

    close() {
      if (this.panel.hidden) return;
      this.panel.hidden = true;
      this.launcher.setAttribute("aria-expanded", "false");
      this.launcher.setAttribute("aria-label", `Open chat: ${this.option("title") || "Chat with us"}`);
      const target = this.returnFocus && this.returnFocus.isConnected ? this.returnFocus
        : this.launcher;
      this.returnFocus = null;
      target.focus();
    }

    // -- history ------------------------------------------------------------------------

    load() {
      try {
        const data = JSON.parse(localStorage.getItem(this.storageKey) || "null");
        return data && typeof data === "object" ? data : {};
      } catch {
        return {};
      }
    }

    // Only the session id (and whether an answer was streaming) is stored: the transcript
    // itself is read back from the server (GET /api/sdk/chat/history), the one true copy.
    // A copy in localStorage went stale (a turn answered in another tab, a stopped turn)
    // and left the visitor's words on the device in plain text for as long as it lived.
    save(sessionId, pending = false) {
      try {
        const data = this.load();
        localStorage.setItem(this.storageKey, JSON.stringify({
          sessionId: sessionId || data.sessionId || null,
          // An answer was streaming: after a reload, pick it up again (resume).
          pending: pending || undefined,
          // The conversation was handed to a person: keep listening after a reload.
          live: this.listener ? true : data.live || undefined,
        }));
      } catch {
        // Storage full or disabled (private mode): the conversation just won't survive a reload.
      }
    }

    restore() {
      const data = this.load();
      this.sessionId = typeof data.sessionId === "string" ? data.sessionId : null;
      if (!this.sessionId) return;
      const session = this.sessionId;
      this.queue = this.queue.then(() => this.loadHistory(session, Boolean(data.pending)))
        .then(() => { if (data.live && this.sessionId) this.listen(); })
        .catch(() => undefined);
    }

    /** Shows the session's transcript from the server, then resumes an answer that was
     *  streaming when the page went away (unless the transcript already holds it). */
    async loadHistory(session, pending) {
      let messages;
      try {
        messages = await this.client(await loadSdk()).history(session);
      } catch (err) {
        if (err && err.status === 404) {
          // Not this visitor's session (any more): start afresh rather than fail each send.
          this.reset();
        } else {
          this.notice(describeError(err));
        }
        return;
      }
      this.history = messages.slice(-MAX_HISTORY);
      for (const message of this.history) this.renderMessage(message);
      const last = messages[messages.length - 1];
      if (pending && last && last.role === "user") {
        await this.stream((client, handlers) => client.resume(session, handlers), {});
      } else if (pending) {
        this.save(session);
      }
    }

    notice(text) {
      const { item, body } = this.bubble("notice");
      item.classList.add("error");
      body.replaceChildren(text);
    }

    /** A notice that is not an error (a person joined or left). */
    inform(text) {
      const { item, body } = this.bubble("notice");
      item.classList.add("handoff");
      body.replaceChildren(text);
      this.scrollDown();
      this.announce(text);
    }

    /** Forget the conversation (e.g. when the visitor logs out): log and storage cleared. */
    reset() {
      if (this.controller) this.controller.abort();
      this.stopListening();
      this.history = [];
      this.sessionId = null;
      this.log.replaceChildren();
      try { localStorage.removeItem(this.storageKey); } catch { /* storage disabled */ }
    }

    // -- messages -----------------------------------------------------------------------

    bubble(role) {
      const item = el("div", { class: `msg ${role}` });
      const who = { user: "You", assistant: "Assistant", notice: "Notice",
                    operator: "Agent" }[role] || role;
      item.append(el("span", { class: "sr-only" }, `${who}: `));
      const body = el("div", { class: "body" });
      item.append(body);
      this.log.append(item);
      return { item, body };
    }

    renderMessage(message) {
      const { item, body } = this.bubble(message.role);
      if (message.role === "operator") {
        // A person's words: their name above, plain text (no markdown from people).
        item.insertBefore(el("span", { class: "who" }, message.operator_name || "Agent"), body);
        body.textContent = message.text;
      } else if (message.role === "user") body.textContent = message.text;
      else body.append(renderMarkdown(message.text));
      this.renderActions(item, message.actions || []);
      this.scrollDown();
      return item;
    }

    renderActions(item, actions) {
      const sources = [];
      for (const action of actions) {
        const payload = (action && action.payload) || {};
        if (action.type === "citation") {
          const href = typeof payload.url === "string" ? safeHref(payload.url) : null;
          if (href) sources.push(link(String(payload.title || payload.url), href));
        } else if (action.type === "escalation") {
          const offer = el("button", { type: "button", class: "escalate" }, "Talk to a person");
          offer.addEventListener("click", () => {
            offer.disabled = true;
            this.send(ESCALATION_MESSAGE, { mode: "livehelp" }).catch(() => undefined);
          });
          item.append(offer);
        }
      }
      if (sources.length) {
        const nav = el("div", { class: "sources" });
        nav.append(el("span", { class: "sources-label" }, "Sources: "));
        const list = el("ul");
        for (const a of sources) { const li = el("li"); li.append(a); list.append(li); }
        nav.append(list);
        item.append(nav);
      }
    }

    scrollDown() { this.log.scrollTop = this.log.scrollHeight; }

    announce(text) {
      // Re-set so the same text twice is announced twice.
      this.announcer.textContent = "";
      window.setTimeout(() => { this.announcer.textContent = text; }, 50);
    }

    // -- a person in the conversation (GET /api/sdk/chat/listen) ------------------------

    /** Follows the session live: operator messages and handoff notices appear as they
     *  happen (the bot's replies arrive with the visitor's own sends). */
    async listen() {
      if (this.listener || !this.sessionId) return;
      const sdk = await loadSdk();
      if (this.listener || !this.sessionId) return;
      this.listener = this.client(sdk).listen(this.sessionId, {
        onMessage: (m) => {
          if (m.role !== "operator") return;
          const message = { role: "operator", text: m.text,
                            operator_name: (m.operator && m.operator.name) || "Agent" };
          this.history.push(message);
          this.renderMessage(message);
          this.announce(`${message.operator_name}: ${m.text}`);
        },
        onState: (st) => {
          const name = (st.operator && st.operator.name) || "An agent";
          const text = {
            waiting: "Waiting for a person to join…",
            human: `${name} joined the conversation.`,
            bot: "You're chatting with the assistant again.",
            closed: "This conversation was closed.",
          }[st.state];
          if (text) this.inform(text);
        },
      });
      this.save(this.sessionId);
    }

    stopListening() {
      if (this.listener) this.listener.close();
      this.listener = null;
    }

    // -- sending ------------------------------------------------------------------------

    /** Sends `text` as the visitor; resolves to {text, actions} once the answer is complete. */
    send(text, options = {}) {
      const run = this.queue.then(() => this.sendNow(String(text), options));
      this.queue = run.catch(() => undefined);
      return run;
    }

    async sendNow(text, { mode } = {}) {
      const user = { role: "user", text };
      this.history.push(user);
      this.renderMessage(user);
      this.save();
      return this.stream((client, handlers) => client.send(text, { ...handlers, mode }),
                         { mode });
    }

    client(sdkModule) {
      return sdkModule.createClient({
        baseUrl: this.option("base-url") || scriptUrl.origin,
        key: this.option("key"),
        userId: this.option("user-id") || undefined,
        userToken: this.option("user-token") || undefined,
        agentId: this.option("agent") || undefined,
        sessionId: this.sessionId || undefined,
      });
    }

    /** Shows one streamed answer: `run(client, handlers)` is a send or a resume. */
    async stream(run, { mode }) {
      const { item, body } = this.bubble("assistant");
      item.setAttribute("aria-busy", "true");
      body.append(el("span", { class: "typing", "aria-hidden": "true" }, "…"));
      this.controller = new AbortController();
      this.sendButton.textContent = "Stop";
      this.sendButton.classList.add("stop");
      let frame = 0;
      let latest = "";
      const paint = () => {
        frame = 0;
        body.replaceChildren(renderMarkdown(latest));
        this.scrollDown();
      };
      try {
        const client = this.client(await loadSdk());
        const reply = await run(client, {
          signal: this.controller.signal,
          onStart: ({ sessionId }) => {
            this.sessionId = sessionId || this.sessionId;
            this.save(this.sessionId, true);
          },
          onText: (_delta, all) => {
            latest = all;
            if (!frame) frame = window.requestAnimationFrame(paint);
          },
        });
        if (frame) window.cancelAnimationFrame(frame);
        latest = reply.text;
        this.sessionId = reply.sessionId || this.sessionId;
        if (mode === "livehelp") this.listen().catch(() => undefined);
        if (!reply.text) {
          // A person has the conversation: no generated reply, their answer comes live.
          item.remove();
          return { text: "", actions: reply.actions };
        }
        paint();
        const routed = mode === "livehelp";
        if (routed) item.classList.replace("assistant", "notice");
        const message = { role: routed ? "notice" : "assistant", text: reply.text,
                          actions: reply.actions };
        this.renderActions(item, reply.actions);
        this.history.push(message);
        this.save(this.sessionId);
        this.announce(`${routed ? "Notice" : "Assistant"}: ${reply.text}`);
        return { text: reply.text, actions: reply.actions };
      } catch (err) {
        if (frame) window.cancelAnimationFrame(frame);
        const aborted = err && err.name === "AbortError";
        if (aborted && latest) {
          paint();
          this.history.push({ role: "assistant", text: latest, actions: [] });
          this.save(this.sessionId);
        } else {
          item.classList.replace("assistant", "notice");
          item.classList.add("error");
          body.replaceChildren(aborted ? "Stopped." : describeError(err));
          this.announce(body.textContent);
          this.save(this.sessionId);
        }
        throw err;
      } finally {
        item.removeAttribute("aria-busy");
        this.controller = null;
        this.sendButton.textContent = "Send";
        this.sendButton.classList.remove("stop");
      }
    }
  }

  window.customElements.define("switchboard-chat", SwitchboardChat);

  function element() {
    let chat = document.querySelector("switchboard-chat");
    if (!chat) {
      chat = document.createElement("switchboard-chat");
      document.body.append(chat);
    }
    return chat;
  }

  const mount = () => {
    const chat = element();
    window.Switchboard = Object.freeze({
      element: chat,
      open: () => chat.open(),
      close: () => chat.close(),
      send: (text) => chat.send(text),
      reset: () => chat.reset(),
    });
    document.dispatchEvent(new CustomEvent("switchboard:ready"));
  };
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount, { once: true });
})();
