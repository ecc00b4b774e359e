// The dashboard shell: navigation (hash routes, so the gateway serves one page), the
// token, the live connection shared by all views, and the state that outlives a view
// (cluster, performance history), fed by polls and live events.
import { useCallback, useEffect, useMemo, useReducer, useRef, useState } from "react";
import { ApiError, api, getToken, setToken } from "./api";
import { ClusterView } from "./components/ClusterView";
import { DistributedWorkflows } from "./components/DistributedWorkflows";
import { PerformanceView } from "./components/PerformanceView";
import { LiveClient, liveTarget, type ConnectionState } from "./live";
import { LiveContext, type Live } from "./live-context";
import { clusterReducer, emptyCluster, pushSample, sample, type Sample } from "./store";
import type { LiveEvent, PerformanceMetrics } from "./types";

const POLL_MS = 2000;

export type Route = { view: "workflows"; id: string | null } | { view: "cluster" } | { view: "performance" };

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean);
  if (parts[0] === "cluster") return { view: "cluster" };
  if (parts[0] === "performance") return { view: "performance" };
  return { view: "workflows", id: parts[0] === "workflows" && parts[1] ? decodeURIComponent(parts[1]) : null };
}

function routeHash(route: Route): string {
  if (route.view === "workflows") return route.id ? `#/workflows/${encodeURIComponent(route.id)}` : "#/workflows";
  return `#/${route.view}`;
}

function useRoute(): [Route, (r: Route) => void] {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const onHash = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);
  const go = useCallback((r: Route) => {
    window.location.hash = routeHash(r);
  }, []);
  return [route, go];
}

function TokenControl({ onChange, needed }: { onChange: () => void; needed: boolean }) {
  const [open, setOpen] = useState(false);
  const [value, setValue] = useState(getToken);
  const has = Boolean(getToken());
  return (
    <div className="token">
      <button className={`link ${needed ? "attention" : ""}`} onClick={() => setOpen((o) => !o)} aria-expanded={open}>
        {has ? "Token set" : "Token"}
      </button>
      {open || needed ? (
        <form
          className="token-form"
          onSubmit={(e) => {
            e.preventDefault();
            setToken(value.trim());
            setOpen(false);
            onChange();
          }}
        >
          <input
            type="password"
            aria-label="API token"
            placeholder="bearer token"
            value={value}
            onChange={(e) => setValue(e.target.value)}
            autoComplete="off"
          />
          <button type="submit">Save</button>
        </form>
      ) : null}
    </div>
  );
}

export function App() {
  const [route, go] = useRoute();
  const [cluster, dispatch] = useReducer(clusterReducer, emptyCluster);
  const [history, setHistory] = useState<Sample[]>([]);
  const [metrics, setMetrics] = useState<PerformanceMetrics | null>(null);
  const [metricsError, setMetricsError] = useState("");
  const [authNeeded, setAuthNeeded] = useState(false);
  const [gatewayError, setGatewayError] = useState("");
  const [connection, setConnection] = useState<{ state: ConnectionState; detail: string }>({ state: "connecting", detail: "" });
  const [tokenVersion, setTokenVersion] = useState(0);

  // --- live connection ---
  const listeners = useRef(new Set<(event: LiveEvent) => void>());
  const watches = useRef(new Map<string, string[]>());
  const client = useRef<LiveClient | null>(null);

  const resubscribe = useCallback(() => {
    const ids = [...new Set([...watches.current.values()].flat())].slice(0, 32);
    client.current?.subscribe({ cluster: true, telemetry: true, workflow_ids: ids });
  }, []);

  useEffect(() => {
    const live = new LiveClient({
      target: () => liveTarget(window.location.href, getToken()),
      onState: (state, detail = "") => setConnection({ state, detail }),
      onEvent: (event) => {
        if (event.type === "node_joined" || event.type === "node_lost" || event.type === "node_state_changed" || event.type === "telemetry") {
          dispatch({ type: "event", event, now: Date.now() });
        }
        // The server checks the token when it opens the upstream streams, not at the handshake.
        if (event.type === "error" && (event.status === 401 || event.status === 403)) setAuthNeeded(true);
        for (const listener of listeners.current) listener(event);
      },
    });
    client.current = live;
    resubscribe();
    live.start();
    return () => {
      live.stop();
      client.current = null;
    };
  }, [resubscribe]);

  const listen = useCallback((listener: (event: LiveEvent) => void) => {
    listeners.current.add(listener);
    return () => {
      listeners.current.delete(listener);
    };
  }, []);
  const watch = useCallback(
    (key: string, ids: string[]) => {
      if (ids.length) watches.current.set(key, ids);
      else watches.current.delete(key);
      resubscribe();
    },
    [resubscribe],
  );
  const live = useMemo<Live>(
    () => ({ state: connection.state, detail: connection.detail, listen, watch }),
    [connection, listen, watch],
  );

  // --- polls: cluster status and performance metrics, sampled for the charts ---
  const clusterRef = useRef(cluster);
  useEffect(() => {
    clusterRef.current = cluster;
  }, [cluster]);
  useEffect(() => {
    let stopped = false;
    const poll = async () => {
      const [status, perf] = await Promise.allSettled([api.clusterStatus(), api.performance()]);
      if (stopped) return;
      let current = clusterRef.current;
      if (status.status === "fulfilled") {
        current = clusterReducer(current, { type: "status", ...status.value, now: Date.now() });
        dispatch({ type: "status", ...status.value, now: Date.now() });
        setGatewayError("");
        setAuthNeeded(false);
      } else {
        const err = status.reason as unknown;
        setAuthNeeded(err instanceof ApiError && (err.status === 401 || err.status === 403));
        setGatewayError(err instanceof ApiError ? `Cluster status: ${err.status || ""} ${err.message}` : String(err));
      }
      let m: PerformanceMetrics | null = null;
      if (perf.status === "fulfilled") {
        m = perf.value;
        setMetrics(m);
        setMetricsError("");
      } else {
        const err = perf.reason as unknown;
        setMetricsError(
          err instanceof ApiError && err.status === 501
            ? "This coordinator does not report performance metrics (501 Not Implemented)."
            : `Performance metrics unavailable: ${err instanceof ApiError ? err.message : String(err)}`,
        );
      }
      setHistory((h) => pushSample(h, sample(Date.now(), m, current)));
    };
    void poll();
    const timer = setInterval(() => void poll(), POLL_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [tokenVersion]);

  const onToken = () => {
    setTokenVersion((v) => v + 1);
    client.current?.restart();
  };

  const tab = (view: Route["view"], title: string) => (
    <a
      href={`#/${view}`}
      className={route.view === view ? "active" : ""}
      aria-current={route.view === view ? "page" : undefined}
    >
      {title}
    </a>
  );

  return (
    <LiveContext.Provider value={live}>
      <header className="top">
        <div className="brand">
          <span className="logo">⬡</span> Hive mesh
        </div>
        <nav className="tabs" aria-label="Views">
          {tab("workflows", "Workflows")}
          {tab("cluster", "Cluster")}
          {tab("performance", "Performance")}
        </nav>
        <div className="status">
          <span className={`conn conn-${connection.state}`} title={connection.detail} data-testid="connection" data-state={connection.state}>
            {connection.state === "open" ? "live" : connection.state}
          </span>
          <TokenControl onChange={onToken} needed={authNeeded} />
        </div>
      </header>
      {authNeeded ? <div className="banner">The gateway wants a token: enter it above.</div> : null}
      {gatewayError && !authNeeded ? <div className="banner">{gatewayError}</div> : null}
      <main>
        {route.view === "workflows" ? (
          <DistributedWorkflows selected={route.id} onSelect={(id) => go({ view: "workflows", id })} />
        ) : route.view === "cluster" ? (
          <ClusterView cluster={cluster} />
        ) : (
          <PerformanceView history={history} metrics={metrics} metricsError={metricsError} />
        )}
      </main>
    </LiveContext.Provider>
  );
}
