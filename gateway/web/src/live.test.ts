import { LiveClient, backoffDelay, liveTarget } from "./live";
import type { LiveEvent } from "./types";

describe("backoffDelay", () => {
  it("doubles from 0.5 s up to 15 s, with jitter in [0.5, 1)", () => {
    const top = () => 0.999999;
    expect([0, 1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, top))).toEqual([500, 1000, 2000, 4000, 8000, 15000, 15000]);
    expect(backoffDelay(3, () => 0)).toBe(2000);
    expect(backoffDelay(1000, top)).toBe(15000);
  });
});

describe("liveTarget", () => {
  it("derives ws:// from the page and carries the token as a subprotocol", () => {
    expect(liveTarget("http://gw:8000/#/cluster", "")).toEqual({ url: "ws://gw:8000/api/distributed/ws", protocols: [] });
    expect(liveTarget("https://example.org/hive/", "abc.DEF_1")).toEqual({
      url: "wss://example.org/hive/api/distributed/ws",
      protocols: ["hive.v1", "bearer.abc.DEF_1"],
    });
  });

  it("falls back to the query parameter for a token that is not a subprotocol name", () => {
    expect(liveTarget("http://gw/", "a b/c")).toEqual({
      url: "ws://gw/api/distributed/ws?token=a+b%2Fc",
      protocols: ["hive.v1"],
    });
  });
});

class FakeSocket {
  static readonly OPEN = 1;
  readyState = 0;
  sent: string[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((m: { data: string }) => void) | null = null;
  onclose: ((e: { code: number; reason: string }) => void) | null = null;
  send(data: string) {
    this.sent.push(data);
  }
  close() {
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  drop() {
    this.readyState = 3;
    this.onclose?.({ code: 1006, reason: "" });
  }
}

describe("LiveClient", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.stubGlobal("WebSocket", FakeSocket);
  });
  afterEach(() => vi.useRealTimers());

  it("reconnects with backoff and re-sends its subscription each time", () => {
    const sockets: FakeSocket[] = [];
    const events: LiveEvent[] = [];
    const states: string[] = [];
    const client = new LiveClient({
      target: () => ({ url: "ws://gw/api/distributed/ws", protocols: [] }),
      createSocket: () => {
        const s = new FakeSocket();
        sockets.push(s);
        return s as unknown as WebSocket;
      },
      onEvent: (e) => events.push(e),
      onState: (s) => states.push(s),
      random: () => 0.999999,
    });
    client.subscribe({ cluster: true, telemetry: true, workflow_ids: ["wf-1"] });
    client.start();
    sockets[0]?.open();
    expect(JSON.parse(sockets[0]?.sent[0] ?? "")).toEqual({ subscribe: { cluster: true, telemetry: true, workflow_ids: ["wf-1"] } });
    sockets[0]?.onmessage?.({ data: JSON.stringify({ type: "workflow", workflow_id: "wf-1", state: "running" }) });
    expect(events).toHaveLength(1);

    sockets[0]?.drop();
    expect(states.at(-1)).toBe("reconnecting");
    vi.advanceTimersByTime(499);
    expect(sockets).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(sockets).toHaveLength(2);
    sockets[1]?.drop(); // never opened: the next wait doubles
    vi.advanceTimersByTime(999);
    expect(sockets).toHaveLength(2);
    vi.advanceTimersByTime(1);
    sockets[2]?.open();
    expect(states.at(-1)).toBe("open");
    expect(sockets[2]?.sent).toHaveLength(1);

    client.subscribe({ cluster: true, telemetry: true, workflow_ids: [] });
    expect(sockets[2]?.sent).toHaveLength(2);
    client.stop();
    vi.advanceTimersByTime(60_000);
    expect(sockets).toHaveLength(3);
  });
});
