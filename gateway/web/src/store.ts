// Dashboard state that outlives a view: the cluster (from polls and live node events),
// the node event log, and the performance history the charts draw. Pure reducers.
import type { ClusterNode, ClusterSummary, Coordinator, NodeEvent, PerformanceMetrics } from "./types";

export interface NodeLogEntry {
  at: number;
  node: string;
  what: "joined" | "lost" | "healthy" | "degraded" | "suspect" | "unspecified";
}

export interface ClusterState {
  summary: ClusterSummary | null;
  nodes: Record<string, ClusterNode>;
  log: NodeLogEntry[];
  /** From the last poll: the leader first, then the standbys. */
  coordinators: Coordinator[];
}

export const LOG_LIMIT = 50;

export const emptyCluster: ClusterState = { summary: null, nodes: {}, log: [], coordinators: [] };

export type ClusterAction =
  | { type: "status"; summary: ClusterSummary; nodes: ClusterNode[]; coordinators?: Coordinator[]; now: number }
  | { type: "event"; event: NodeEvent; now: number };

function logged(log: NodeLogEntry[], entry: NodeLogEntry): NodeLogEntry[] {
  return [entry, ...log].slice(0, LOG_LIMIT);
}

export function clusterReducer(state: ClusterState, action: ClusterAction): ClusterState {
  if (action.type === "status") {
    const nodes: Record<string, ClusterNode> = {};
    let log = state.log;
    for (const node of action.nodes) {
      nodes[node.name] = node;
      const before = state.nodes[node.name];
      // A poll can see a change the socket missed (e.g. while it reconnected).
      if (before && before.state !== node.state) log = logged(log, { at: action.now, node: node.name, what: node.state });
    }
    return { summary: action.summary, nodes, log, coordinators: action.coordinators ?? [] };
  }
  const { event, now } = action;
  const node = event.node;
  const before = state.nodes[node.name];
  let log = state.log;
  // Every (re)subscription starts with a node_joined per known node: only a node that
  // is new since the first poll, or back from lost, has really joined.
  const joined = before === undefined ? state.summary !== null : before.state === "lost";
  if (event.type === "node_joined" && joined) log = logged(log, { at: now, node: node.name, what: "joined" });
  else if (event.type === "node_lost") log = logged(log, { at: now, node: node.name, what: "lost" });
  else if (event.type === "node_state_changed" && before?.state !== node.state) {
    log = logged(log, { at: now, node: node.name, what: node.state });
  }
  return { ...state, nodes: { ...state.nodes, [node.name]: node }, log };
}

/** Mean GPU utilisation of a node, 0 when it has no GPUs or is lost. */
export function nodeUtilization(node: ClusterNode): number {
  if (node.state === "lost" || node.gpus.length === 0) return 0;
  return node.gpus.reduce((sum, g) => sum + g.utilization_percent, 0) / node.gpus.length;
}

export interface Sample {
  t: number;
  tokensPerSecond: number;
  tasksPerSecond: number;
  queued: number;
  running: number;
  p50: number;
  p95: number;
  p99: number;
  queueP95: number;
  utilization: Record<string, number>;
}

export const HISTORY_LIMIT = 300;

export function sample(now: number, metrics: PerformanceMetrics | null, cluster: ClusterState): Sample {
  const utilization: Record<string, number> = {};
  for (const node of Object.values(cluster.nodes)) utilization[node.name] = nodeUtilization(node);
  return {
    t: now,
    tokensPerSecond: metrics?.tokens_per_second ?? 0,
    tasksPerSecond: metrics?.tasks_per_second ?? 0,
    queued: cluster.summary?.queued_tasks ?? 0,
    running: cluster.summary?.running_tasks ?? 0,
    p50: metrics?.completion_seconds.p50 ?? 0,
    p95: metrics?.completion_seconds.p95 ?? 0,
    p99: metrics?.completion_seconds.p99 ?? 0,
    queueP95: metrics?.queue_seconds.p95 ?? 0,
    utilization,
  };
}

export function pushSample(history: Sample[], s: Sample, limit = HISTORY_LIMIT): Sample[] {
  const next = history.length >= limit ? history.slice(history.length - limit + 1) : history.slice();
  next.push(s);
  return next;
}
