// Types for sdk.js, the Switchboard stream SDK (Halo `POST /api/sdk/chat/stream`).

export declare const STREAM_PATH: "/api/sdk/chat/stream";
export declare const RESUME_PATH: "/api/sdk/chat/stream/resume";
export declare const HISTORY_PATH: "/api/sdk/chat/history";
export declare const STOP_PATH: "/api/sdk/chat/stop";
export declare const LISTEN_PATH: "/api/sdk/chat/listen";
/** Reconnect attempts per send after a dropped connection. */
export declare const MAX_RECONNECTS: number;

/** An action record: `{"type": "citation" | "escalation" | "highlight" | …, "payload": {…}}`. */
export interface Action {
  type: string;
  payload: Record<string, unknown>;
}

export interface ClientOptions {
  /** Where Switchboard's shim is served, e.g. "https://chat.example.com". Defaults to the page's origin. */
  baseUrl?: string;
  /** Your publishable widget key (`ab_live_…`). */
  key: string;
  /** The user's external id; omitted means "anonymous". */
  userId?: string;
  /** HS256 JWT signed with your Identity Secret, with a matching `user_id` claim. */
  userToken?: string;
  /** Continue an existing conversation (`chat_<uuid>`). */
  sessionId?: string;
  /** Pin the conversation to an agent (id or slug). */
  agentId?: string;
  /** A fetch implementation (defaults to the global one). */
  fetch?: typeof fetch;
}

export interface SendOptions {
  /** Each piece of visible text as it arrives (`delta`), and all of it so far (`text`). */
  onText?: (delta: string, text: string) => void;
  /** Each action as it resolves (error records are raised as StreamError instead). */
  onAction?: (action: Action) => void;
  /** Aborting rejects the send with an AbortError and stops the turn on the server. */
  signal?: AbortSignal;
  /** Once the answer's headers arrived: the session (new or continued) and the agent. */
  onStart?: (info: { sessionId: string | null; agentId: string | null }) => void;
  userId?: string;
  userToken?: string;
  sessionId?: string;
  agentId?: string;
  mode?: "chat" | "voice" | "video" | "livehelp";
  context?: Record<string, { label?: string; type?: string; value: unknown }>;
  customFields?: Record<string, unknown>;
  /** Names the turn; a random one is generated per send. */
  idempotencyKey?: string;
}

export interface SendResult {
  /** The full visible text (records stripped). */
  text: string;
  /** The final `__ACTIONS__` summary: every action of the turn. */
  actions: Action[];
  sessionId: string | null;
  agentId: string | null;
}

export interface StopResult {
  stopped: boolean;
  session_id: string | null;
}

/** One message of a session's transcript (GET /api/sdk/chat/history). */
export interface HistoryMessage {
  role: "user" | "assistant" | "operator";
  text: string;
  /** For role "operator": the person who wrote it. */
  operator_name?: string;
  actions: Action[];
  /** ISO 8601, UTC. */
  created_at: string;
}

export interface ErrorDetails {
  code?: string;
  status?: number;
  retryAfter?: number | null;
  field?: string | null;
  sessionId?: string | null;
  cause?: unknown;
}

/** An error with the dialect's stable `code` (docs/halo.md), its HTTP status and Retry-After. */
export declare class SwitchboardError extends Error {
  constructor(message: string, details?: ErrorDetails);
  readonly code: string;
  /** HTTP status; 0 when the error happened after the stream started or on the network. */
  readonly status: number;
  /** Seconds to wait before retrying (429, 503), else null. */
  readonly retryAfter: number | null;
  readonly field: string | null;
  readonly sessionId: string | null;
}
/** 429: `rate_limited`, `budget_exceeded`, `turn_in_progress`. */
export declare class RateLimitError extends SwitchboardError {}
/** The answer failed after it had started (the stream's error record). */
export declare class StreamError extends SwitchboardError {}
/** `connection_lost`: the connection could not be re-established. */
export declare class ConnectionError extends SwitchboardError {}

export declare class StreamParser {
  constructor(handlers?: Pick<SendOptions, "onText" | "onAction">);
  /** Bytes fed so far (the resume offset). */
  readonly bytes: number;
  readonly text: string;
  readonly actions: Action[];
  readonly finalActions: Action[] | null;
  readonly error: { code: string; message: string } | null;
  readonly finished: boolean;
  push(bytes: Uint8Array): void;
}

export declare function errorFromResponse(
  response: Response, sessionId?: string | null,
): Promise<SwitchboardError>;

export interface Client {
  readonly baseUrl: string;
  /** The conversation the next send continues (set from `X-Session-Id`). */
  sessionId: string | null;
  send(message: string, options?: SendOptions): Promise<SendResult>;
  /** Follow the session's latest turn from its first byte (e.g. after a page reload). */
  resume(sessionId: string,
         options?: Pick<SendOptions, "onText" | "onAction" | "onStart" | "signal">,
  ): Promise<SendResult>;
  stop(sessionId?: string): Promise<StopResult>;
  /**
   * The session's messages, oldest first, read from the server (all pages). Rejects with
   * a SwitchboardError `session_not_found` (404) for a session this visitor did not start.
   */
  history(sessionId?: string, options?: { signal?: AbortSignal }): Promise<HistoryMessage[]>;
  /**
   * Follow the session live (Server-Sent Events from GET /api/sdk/chat/listen): operator
   * messages, handoff state changes and the bot's replies. Reconnects by itself, resuming
   * after the last event seen. `close()` ends it.
   */
  listen(sessionId: string | null | undefined, handlers?: ListenHandlers,
         options?: { signal?: AbortSignal; lastEventId?: string | null }): ListenHandle;
  /** Forget the conversation: the next send starts a new session. */
  reset(): void;
}

/** A conversation's handoff state (docs/handoff.md). */
export type HandoffState = "bot" | "waiting" | "human" | "closed";

export interface ListenEventBase {
  /** The event id: the resume cursor. */
  id: number;
  kind: "message" | "state";
  session_id: string;
  conversation_id: string;
  created_at: string;
}

export interface ListenMessage extends ListenEventBase {
  kind: "message";
  message_id: string;
  role: "user" | "assistant" | "operator";
  text: string;
  /** For role "operator": who wrote it. */
  operator?: { id: string; name: string };
}

export interface ListenState extends ListenEventBase {
  kind: "state";
  state: HandoffState;
  previous: HandoffState;
  team: string;
  ticket_id: string;
  reason: string;
  operator: { id: string; name: string };
}

export interface ListenHandlers {
  onMessage?(message: ListenMessage): void;
  onState?(state: ListenState): void;
  onEvent?(event: { event: string; data: ListenMessage | ListenState }): void;
  onOpen?(): void;
  /** A refusal (e.g. `session_not_found`); 4xx refusals end the stream. */
  onError?(error: SwitchboardError): void;
}

export interface ListenHandle {
  /** The id of the last event received (resumed from after a reconnect). */
  readonly lastEventId: string | null;
  readonly closed: boolean;
  close(): void;
}

export declare function createClient(options: ClientOptions): Client;
