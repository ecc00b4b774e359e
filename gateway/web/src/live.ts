// The live event stream: one WebSocket to /api/distributed/ws that reconnects by itself
// with exponential backoff and jitter, and re-sends the current subscription on every
// (re)connect, since the server forgets it when the socket closes.
//
// Tokens: the browser's WebSocket API cannot set an Authorization header, so the token
// travels the way gateway/auth.py reads it from browsers: as the subprotocol list
// `hive.v1, bearer.<token>` (the server answers `hive.v1`), or, for a token that is not
// a valid subprotocol name, as the `token` query parameter of the URL.
import type { LiveEvent, Subscription } from "./types";

export type ConnectionState = "connecting" | "open" | "reconnecting" | "stopped";

/** Delay before reconnect attempt `attempt` (0-based): base·2^attempt capped at max, times a jitter in [0.5, 1). */
export function backoffDelay(attempt: number, random: () => number = Math.random, base = 500, max = 15_000): number {
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 20));
  return Math.round(ceiling * (0.5 + random() / 2));
}

export const WS_SUBPROTOCOL = "hive.v1";
// RFC 6455 subprotocol names are RFC 7230 tokens.
const SUBPROTOCOL_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export interface LiveTarget {
  url: string;
  protocols: string[];
}

/** Where to connect for a page at `pageUrl`, and how to carry `token` (see above). */
export function liveTarget(pageUrl: string, token: string): LiveTarget {
  const url = new URL("api/distributed/ws", pageUrl);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.hash = "";
  if (!token) return { url: url.toString(), protocols: [] };
  if (SUBPROTOCOL_TOKEN.test(token)) return { url: url.toString(), protocols: [WS_SUBPROTOCOL, `bearer.${token}`] };
  url.searchParams.set("token", token);
  return { url: url.toString(), protocols: [WS_SUBPROTOCOL] };
}

export interface LiveClientOptions {
  target: () => LiveTarget;
  onEvent: (event: LiveEvent) => void;
  onState: (state: ConnectionState, detail?: string) => void;
  createSocket?: (target: LiveTarget) => WebSocket;
  random?: () => number;
}

export class LiveClient {
  private socket: WebSocket | null = null;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stopped = true;
  private subscription: Subscription = { cluster: true, telemetry: true, workflow_ids: [] };

  constructor(private readonly options: LiveClientOptions) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const socket = this.socket;
    this.socket = null;
    socket?.close(1000, "dashboard closed");
    this.options.onState("stopped");
  }

  /** Drop the socket and connect again now (e.g. after the token changed). */
  restart(): void {
    this.stop();
    this.attempt = 0;
    this.start();
  }

  subscribe(subscription: Subscription): void {
    const same = JSON.stringify(subscription) === JSON.stringify(this.subscription);
    this.subscription = subscription;
    if (!same) this.send();
  }

  private send(): void {
    if (this.socket?.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({ subscribe: this.subscription }));
    }
  }

  private connect(): void {
    this.options.onState(this.attempt === 0 ? "connecting" : "reconnecting");
    const create = this.options.createSocket ?? ((t: LiveTarget) => new WebSocket(t.url, t.protocols));
    let socket: WebSocket;
    try {
      socket = create(this.options.target());
    } catch (err) {
      this.scheduleReconnect(String(err));
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      this.attempt = 0;
      this.options.onState("open");
      this.send();
    };
    socket.onmessage = (message: MessageEvent) => {
      if (this.socket !== socket || typeof message.data !== "string") return;
      try {
        this.options.onEvent(JSON.parse(message.data) as LiveEvent);
      } catch {
        // Not JSON: nothing the server sends; ignore rather than drop the connection.
      }
    };
    socket.onclose = (event: CloseEvent) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.scheduleReconnect(event.reason || `closed (${event.code})`);
    };
  }

  private scheduleReconnect(detail: string): void {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt, this.options.random);
    this.attempt += 1;
    this.options.onState("reconnecting", `${detail}; retrying in ${(delay / 1000).toFixed(1)} s`);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.stopped) this.connect();
    }, delay);
  }
}
