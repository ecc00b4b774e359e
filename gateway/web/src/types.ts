// The gateway's REST and WebSocket shapes (gateway/schemas.py, gateway/events.py).
// Enums are short lower-case names; timestamps RFC 3339 strings or null.

export type Priority = "low" | "normal" | "high";
export type WorkflowState = "pending" | "running" | "succeeded" | "failed" | "cancelled" | "unspecified";
export type TaskState = "unspecified" | "queued" | "running" | "succeeded" | "failed" | "cancelled";
// "degraded": the node heartbeats but none of its Ollama endpoints is healthy (it gets no work).
export type NodeState = "unspecified" | "healthy" | "degraded" | "suspect" | "lost";

export const TERMINAL_WORKFLOW_STATES: ReadonlySet<string> = new Set(["succeeded", "failed", "cancelled"]);

export interface WorkflowCreate {
  name: string;
  requirements: string;
  language: string;
  priority: Priority;
  pipeline: string;
}

export interface TaskStats {
  prompt_eval_count: number;
  eval_count: number;
  total_duration_ns: number;
  load_duration_ns: number;
  prompt_eval_duration_ns: number;
  eval_duration_ns: number;
}

export interface TaskRecord {
  task_id: string;
  node: string;
  endpoint_id: string;
  attempt: number;
  state: TaskState;
  queued_at: string | null;
  started_at: string | null;
  finished_at: string | null;
  stats: TaskStats;
  output: string;
  error: string;
}

export interface Stage {
  name: string;
  type: string;
  model: string;
  depends_on: string[];
  state: TaskState;
  tasks: TaskRecord[];
}

export interface Artifact {
  path: string;
  content: string;
  kind: string;
  stage: string;
}

export interface WorkflowSummary {
  id: string;
  name: string;
  language: string;
  priority: string;
  pipeline: string;
  state: WorkflowState;
  created_at: string | null;
  started_at: string | null;
  finished_at: string | null;
  error: string;
  labels: Record<string, string>;
  stages_total: number;
  stages_finished: number;
}

export interface Workflow extends WorkflowSummary {
  requirements: string;
  stages: Stage[];
  artifacts: Artifact[];
}

export interface WorkflowList {
  workflows: WorkflowSummary[];
  next_page_token: string;
}

export interface Gpu {
  index: number;
  name: string;
  vendor: string;
  memory_total_bytes: number;
  memory_used_bytes: number;
  utilization_percent: number;
  temperature_celsius: number;
  power_watts: number;
  throttled: boolean;
}

export interface LoadedModel {
  name: string;
  size_vram_bytes: number;
  expires_at: string | null;
}

export interface Endpoint {
  id: string;
  url: string;
  gpu_indices: number[];
  num_parallel: number;
  max_queue: number;
  version: string;
  models: string[];
  healthy: boolean;
  loaded_models: LoadedModel[];
  in_flight: number;
  error: string;
  // Federation: the Hive cluster this endpoint is the gateway of ("" for an Ollama).
  hive_cluster?: string;
}

export interface ClusterNode {
  name: string;
  state: NodeState;
  draining: boolean;
  labels: Record<string, string>;
  specializations: string[];
  features: string[];
  agent_address: string;
  agent_version: string;
  telemetry_provider: string;
  gpus: Gpu[];
  endpoints: Endpoint[];
  last_heartbeat: string | null;
  connected_at: string | null;
  reconnects: number;
  running_tasks: number;
}

export interface ClusterSummary {
  nodes_total: number;
  nodes_healthy: number;
  nodes_degraded: number;
  gpus: number;
  vram_total_bytes: number;
  vram_used_bytes: number;
  endpoints: number;
  models: string[];
  running_tasks: number;
  queued_tasks: number;
}

/** One coordinator sharing the cluster's state, as the leader sees it (issue 18). */
export interface Coordinator {
  address: string;
  role: "leader" | "standby" | "gone";
  epoch: number;
  lease_age_seconds: number;
  seen_age_seconds: number;
}

export interface ClusterStatus {
  summary: ClusterSummary;
  nodes: ClusterNode[];
  /** The leader first; empty when the coordinator could not read them in time. */
  coordinators: Coordinator[];
}

export interface Finding {
  kind: string;
  severity: "unspecified" | "info" | "warning" | "critical";
  subject: string;
  evidence: string;
  recommendation: string;
  detected_at: string | null;
}

export interface OptimizationAction {
  kind: string;
  node: string;
  endpoint_id: string;
  model: string;
  reason: string;
  before: string;
  after: string;
}

export interface OptimizationResult {
  actions: OptimizationAction[];
  findings: Finding[];
  applied: boolean;
}

export interface LatencySummary {
  p50: number;
  p95: number;
  p99: number;
  count: number;
}

export interface NodePerformance {
  node: string;
  utilization_percent: number;
  tokens_per_second: number;
  tasks_succeeded: number;
  tasks_failed: number;
}

export interface PerformanceMetrics {
  utilization_percent: number;
  tokens_per_second: number;
  tasks_per_second: number;
  completion_seconds: LatencySummary;
  queue_seconds: LatencySummary;
  nodes: NodePerformance[];
  findings: Finding[];
  tasks_succeeded: number;
  tasks_failed: number;
}

/** RFC 9457 problem details, as gateway/problems.py sends them. */
export interface FieldError {
  field: string;
  reason: string;
  type: string;
}

export interface Problem {
  type?: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  grpc_status?: string;
  errors?: FieldError[];
}

// --- WebSocket events (gateway/events.py) ---

export interface NodeEvent {
  type: "node_joined" | "node_state_changed" | "node_lost" | "telemetry";
  at: string | null;
  node: ClusterNode;
}

export interface TaskEvent {
  type: "task";
  at: string | null;
  task_id: string;
  state: TaskState;
  node: string;
  endpoint_id: string;
  model: string;
  task_type: string;
  attempt: number;
  error: string;
  workflow_id?: string;
  stage?: string;
}

export interface StageEvent {
  type: "stage_started" | "stage_finished";
  at: string | null;
  workflow_id: string;
  stage: string;
  task_type: string;
  model: string;
  node: string;
  state?: TaskState;
  message?: string;
}

export interface WorkflowEvent {
  type: "workflow";
  at: string | null;
  workflow_id: string;
  state: WorkflowState;
  error: string;
}

export interface SubscribedEvent {
  type: "subscribed";
  subscription: Subscription;
}

export interface ErrorEvent {
  type: "error";
  status: number;
  detail: string;
  grpc_status?: string;
  workflow_id?: string;
}

export type LiveEvent = NodeEvent | TaskEvent | StageEvent | WorkflowEvent | SubscribedEvent | ErrorEvent;

export interface Subscription {
  cluster: boolean;
  telemetry: boolean;
  workflow_ids: string[];
  events?: string[] | null;
}
