// Switchboard stream SDK: the Halo `POST /api/sdk/chat/stream` dialect from a browser.
// An ES module with no dependencies; types in sdk.d.ts. See README "Widget and SDK".
//
//   import { createClient } from "https://HOST/sdk.js";
//   const client = createClient({ baseUrl: "https://HOST", key: "ab_live_…" });
//   const reply = await client.send("Hello", { onText: (delta, text) => render(text) });

export const STREAM_PATH = "/api/sdk/chat/stream";
export const RESUME_PATH = "/api/sdk/chat/stream/resume";
export const HISTORY_PATH = "/api/sdk/chat/history";
export const STOP_PATH = "/api/sdk/chat/stop";
export const LISTEN_PATH = "/api/sdk/chat/listen";

// How many times one send reconnects after a dropped connection before giving up, and
// the first wait between attempts (doubled each time, capped).
export const MAX_RECONNECTS = 5;
const RECONNECT_DELAY_MS = 200;
const RECONNECT_DELAY_MAX_MS = 3000;

const RS = "\x1e";
const ACTION_TAG = "__ACTION__";
const ACTIONS_TAG = "__ACTIONS__";

/** An error the server (or the connection) reported, with the dialect's stable `code`. */
export class SwitchboardError extends Error {
  constructor(message, { code = "unknown", status = 0, retryAfter = null, field = null,
                         sessionId = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "SwitchboardError";
    this.code = code;
    this.status = status;
    this.retryAfter = retryAfter;
    this.field = field;
    this.sessionId = sessionId;
  }
}

/** 429: `retryAfter` says how many seconds to wait (`rate_limited`, `turn_in_progress`…). */
export class RateLimitError extends SwitchboardError {
  constructor(message, details) { super(message, details); this.name = "RateLimitError"; }
}

/** The answer failed after it had started streaming (the stream's `error` record). */
export class StreamError extends SwitchboardError {
  constructor(message, details) { super(message, details); this.name = "StreamError"; }
}

/** The connection could not be (re-)established within MAX_RECONNECTS attempts. */
export class ConnectionError extends SwitchboardError {
  constructor(message, details) {
    super(message, { code: "connection_lost", ...details });
    this.name = "ConnectionError";
  }
}

function retryAfterSeconds(response) {
  const raw = response.headers.get("Retry-After");
  if (raw === null || raw.trim() === "") return null;
  const seconds = Number(raw);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(raw);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

/** The typed error for a non-2xx response (the `{"error": {code, message, field}}` envelope). */
export async function errorFromResponse(response, sessionId = null) {
  let code = "http_" + response.status;
  let message = `HTTP ${response.status}`;
  let field = null;
  try {
    const body = await response.json();
    if (body && typeof body.error === "object" && body.error !== null) {
      code = String(body.error.code ?? code);
      message = String(body.error.message ?? message);
      field = body.error.field ?? null;
    }
  } catch {
    // Not the JSON envelope (a proxy's error page): keep the status-derived code.
  }
  const details = { code, status: response.status, retryAfter: retryAfterSeconds(response),
                    field, sessionId };
  return response.status === 429 ? new RateLimitError(message, details)
    : new SwitchboardError(message, details);
}

/**
 * Splits the Halo byte stream into visible text and `\x1E__ACTION(S)__…\x1E` records.
 * Bytes may be cut anywhere (inside a UTF-8 character, inside a record): the decoder keeps
 * partial characters and the parser keeps partial records until the rest arrives.
 */
export class StreamParser {
  constructor({ onText, onAction } = {}) {
    this.decoder = new TextDecoder("utf-8");
    this.onText = onText;
    this.onAction = onAction;
    this.buffer = "";
    this.inRecord = false;
    this.text = "";
    this.actions = [];
    this.finalActions = null;
    this.error = null;
    this.bytes = 0;
  }

  /** Feed one network chunk (a Uint8Array). */
  push(bytes) {
    this.bytes += bytes.byteLength;
    this.buffer += this.decoder.decode(bytes, { stream: true });
    this.drain();
  }

  drain() {
    while (this.buffer) {
      const at = this.buffer.indexOf(RS);
      if (this.inRecord) {
        if (at < 0) return; // the record's closing separator has not arrived yet
        this.record(this.buffer.slice(0, at));
        this.buffer = this.buffer.slice(at + 1);
        this.inRecord = false;
      } else {
        const visible = at < 0 ? this.buffer : this.buffer.slice(0, at);
        this.buffer = at < 0 ? "" : this.buffer.slice(at + 1);
        this.inRecord = at >= 0;
        if (visible) {
          this.text += visible;
          if (this.onText) this.onText(visible, this.text);
        }
      }
    }
  }

  record(raw) {
    let value;
    if (raw.startsWith(ACTIONS_TAG)) {
      value = safeJson(raw.slice(ACTIONS_TAG.length));
      this.finalActions = Array.isArray(value) ? value : [];
    } else if (raw.startsWith(ACTION_TAG)) {
      value = safeJson(raw.slice(ACTION_TAG.length));
      if (!value || typeof value !== "object") return;
      if (value.type === "error") {
        const payload = value.payload || {};
        this.error = { code: String(payload.code || "stream_error"),
                       message: String(payload.message || "The answer failed.") };
        return;
      }
      this.actions.push(value);
      if (this.onAction) this.onAction(value);
    }
    // Anything else framed by separators is a record of a newer server: ignored.
  }

  get finished() { return this.finalActions !== null; }
}

function safeJson(text) {
  try { return JSON.parse(text); } catch { return null; }
}

function randomKey() {
  // crypto.randomUUID needs a secure context; getRandomValues works on plain http pages.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "sdk-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    if (signal) {
      signal.addEventListener("abort", () => { clearTimeout(timer); reject(signal.reason); },
                              { once: true });
    }
  });
}

function abortError(signal) {
  return signal && signal.reason !== undefined ? signal.reason
    : new DOMException("The send was aborted.", "AbortError");
}

class Client {
  constructor({ baseUrl, key, userId, userToken, sessionId, agentId, fetch: fetchImpl } = {}) {
    if (!key) throw new TypeError("createClient: `key` (your publishable key) is required");
    this.baseUrl = String(baseUrl || (typeof location !== "undefined" ? location.origin : ""))
      .replace(/\/+$/, "");
    this.key = key;
    this.userId = userId || null;
    this.userToken = userToken || null;
    this.sessionId = sessionId || null;
    this.agentId = agentId || null;
    this.fetch = fetchImpl || globalThis.fetch.bind(globalThis);
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.key}`, ...extra };
  }

  /**
   * Send one message and stream the answer. Resolves to {text, actions, sessionId, agentId}
   * once the final record arrived; reconnects transparently (byte-offset resume) when the
   * connection drops; `signal` aborts and stops the turn on the server.
   */
  async send(message, options = {}) {
    const { signal } = options;
    const body = { message };
    const userId = options.userId ?? this.userId;
    const userToken = options.userToken ?? this.userToken;
    const sessionId = options.sessionId ?? this.sessionId;
    const agentId = options.agentId ?? this.agentId;
    if (userId) body.user_id = userId;
    if (userToken) body.user_token = userToken;
    if (sessionId) body.session_id = sessionId;
    if (agentId) body.agent_id = agentId;
    if (options.mode) body.mode = options.mode;
    if (options.context) body.context = options.context;
    if (options.customFields) body.custom_fields = options.customFields;
    // Names the turn, so a POST retried after a connection failure attaches to it
    // instead of starting a second one.
    const idempotencyKey = options.idempotencyKey || randomKey();
    const post = () => this.fetch(this.baseUrl + STREAM_PATH, {
      method: "POST", signal, body: JSON.stringify(body),
      headers: this.headers({ "Content-Type": "application/json",
                              "Idempotency-Key": idempotencyKey }),
    });
    return this.follow({ post, sessionId: null, fallbackSession: sessionId, ...options });
  }

  /**
   * Follow the session's latest turn from its first byte (a page reloaded mid-answer picks
   * the answer up again); resolves like send() once the turn's final record arrived.
   */
  async resume(sessionId, options = {}) {
    if (!sessionId) throw new TypeError("resume: a session id is required");
    return this.follow({ post: null, sessionId, fallbackSession: sessionId, ...options });
  }

  async follow({ post, sessionId, fallbackSession, onText, onAction, onStart, signal }) {
    const parser = new StreamParser({ onText, onAction });
    const turn = { sessionId, agentId: null, started: false };
    const resume = () => {
      const query = new URLSearchParams({ session_id: turn.sessionId,
                                          offset: String(parser.bytes), ...this.identity() });
      return this.fetch(`${this.baseUrl}${RESUME_PATH}?${query}`,
                        { method: "GET", signal, headers: this.headers() });
    };
    let attempt = 0;
    let lastFailure = null;
    try {
      for (;;) {
        let response = null;
        try {
          response = await (turn.started || !post ? resume() : post());
        } catch (err) {
          if (signal && signal.aborted) throw err;
          lastFailure = err; // no response at all: reconnect below
        }
        if (response) {
          if (!response.ok) throw await errorFromResponse(response, turn.sessionId);
          if (!turn.started) {
            turn.started = true;
            turn.sessionId = response.headers.get("X-Session-Id") || turn.sessionId;
            turn.agentId = response.headers.get("X-Agent-Id");
            if (turn.sessionId) this.sessionId = turn.sessionId;
            if (onStart) onStart({ sessionId: turn.sessionId, agentId: turn.agentId });
          }
          try {
            await this.pump(response, parser);
          } catch (err) {
            if (signal && signal.aborted) throw err;
            lastFailure = err;
          }
          if (parser.error) {
            throw new StreamError(parser.error.message,
                                  { code: parser.error.code, sessionId: turn.sessionId });
          }
          if (parser.finished) break;
          // A response without a session id cannot be resumed; only a retry of the POST
          // (same idempotency key, the turn replays from its first byte) can.
          if (!turn.sessionId) {
            throw new ConnectionError("The connection dropped and cannot be resumed.",
                                      { cause: lastFailure });
          }
        }
        attempt += 1;
        if (attempt > MAX_RECONNECTS) {
          throw new ConnectionError("The connection dropped and did not come back.",
                                    { sessionId: turn.sessionId, cause: lastFailure });
        }
        const wait = Math.min(RECONNECT_DELAY_MS * 2 ** (attempt - 1), RECONNECT_DELAY_MAX_MS);
        await sleep(wait, signal);
      }
    } catch (err) {
      if (signal && signal.aborted) {
        const running = turn.sessionId || fallbackSession;
        if (running) await this.stop(running).catch(() => undefined);
        throw abortError(signal);
      }
      throw err;
    }
    return { text: parser.text, actions: parser.finalActions, sessionId: turn.sessionId,
             agentId: turn.agentId };
  }

  async pump(response, parser) {
    if (!response.body) throw new TypeError("This browser cannot stream responses.");
    const reader = response.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        if (value && value.byteLength) parser.push(value);
        if (parser.error || parser.finished) return;
      }
    } finally {
      reader.releaseLock();
    }
  }

  /** Stop the session's running turn (POST /api/sdk/chat/stop); resolves to the reply. */
  async stop(sessionId = this.sessionId) {
    if (!sessionId) return { stopped: false, session_id: null };
    const response = await this.fetch(this.baseUrl + STOP_PATH, {
      method: "POST", keepalive: true,
      body: JSON.stringify({ session_id: sessionId, ...this.identity() }),
      headers: this.headers({ "Content-Type": "application/json" }),
    });
    if (!response.ok) throw await errorFromResponse(response, sessionId);
    return response.json();
  }

  /**
   * The session's messages, oldest first, from the server (GET /api/sdk/chat/history,
   * every page): resolves to [{role, text, actions, created_at}]. Only the visitor who
   * started the session may read it (the same user_id/user_token); others get a 404.
   */
  async history(sessionId = this.sessionId, { signal } = {}) {
    if (!sessionId) throw new TypeError("history: a session id is required");
    const messages = [];
    let pageToken = null;
    do {
      const query = new URLSearchParams({ session_id: sessionId, ...this.identity() });
      if (pageToken) query.set("page_token", pageToken);
      const response = await this.fetch(`${this.baseUrl}${HISTORY_PATH}?${query}`,
                                        { method: "GET", signal, headers: this.headers() });
      if (!response.ok) throw await errorFromResponse(response, sessionId);
      const page = await response.json();
      messages.push(...page.messages);
      pageToken = page.next_page_token;
    } while (pageToken);
    return messages;
  }

  /**
   * Follow the session live (GET /api/sdk/chat/listen, Server-Sent Events): operator
   * messages, handoff state changes and the bot's replies, as they happen. Handlers:
   * onMessage({id, role, text, operator, ...}), onState({id, state, previous, team,
   * operator, ...}), onOpen(), onError(error). Reconnects after a dropped connection,
   * resuming after the last event seen (Last-Event-ID). Returns {close(), lastEventId}.
   */
  listen(sessionId = this.sessionId, handlers = {}, { signal, lastEventId = null } = {}) {
    if (!sessionId) throw new TypeError("listen: a session id is required");
    const controller = new AbortController();
    if (signal) signal.addEventListener("abort", () => controller.abort(), { once: true });
    const handle = { lastEventId, closed: false, close: () => {
      handle.closed = true; controller.abort();
    } };
    const dispatch = (event, raw) => {
      let data;
      try { data = JSON.parse(raw); } catch { return; }
      if (event === "message" && handlers.onMessage) handlers.onMessage(data);
      else if (event === "state" && handlers.onState) handlers.onState(data);
      if (handlers.onEvent) handlers.onEvent({ event, data });
    };
    const run = async () => {
      let delay = RECONNECT_DELAY_MS;
      while (!handle.closed) {
        const query = new URLSearchParams({ session_id: sessionId, ...this.identity() });
        const extra = handle.lastEventId ? { "Last-Event-ID": String(handle.lastEventId) } : {};
        let response;
        try {
          response = await this.fetch(`${this.baseUrl}${LISTEN_PATH}?${query}`, {
            method: "GET", signal: controller.signal,
            headers: this.headers({ Accept: "text/event-stream", ...extra }),
          });
        } catch (cause) {
          if (handle.closed) return;
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(delay * 2, RECONNECT_DELAY_MAX_MS);
          continue;
        }
        if (!response.ok) {
          const error = await errorFromResponse(response, sessionId);
          if (handlers.onError) handlers.onError(error);
          if (response.status < 500 && response.status !== 429) { handle.closed = true; return; }
          await new Promise((r) => setTimeout(r, delay));
          continue;
        }
        delay = RECONNECT_DELAY_MS;
        if (handlers.onOpen) handlers.onOpen();
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        let fields = {};
        let data = [];
        try {
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
                  if (fields.id) handle.lastEventId = fields.id;
                  dispatch(fields.event || "message", data.join("\n"));
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
        } catch (cause) {
          if (handle.closed) return;
        }
        if (!handle.closed) await new Promise((r) => setTimeout(r, delay));
      }
    };
    run();
    return handle;
  }

  /** The user_id/user_token fields a verified user's session needs on every route. */
  identity() {
    const fields = {};
    if (this.userId) fields.user_id = this.userId;
    if (this.userToken) fields.user_token = this.userToken;
    return fields;
  }

  /** Forget the conversation: the next send starts a new session. */
  reset() { this.sessionId = null; }
}

/** A client for one publishable key; it keeps the session id between sends. */
export function createClient(options) {
  return new Client(options);
}
