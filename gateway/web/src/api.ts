// The REST client: every call goes through `request`, which adds the bearer token when
// one is set and turns problem+json answers into `ApiError`s that keep the problem.
// URLs are relative to the page, so the dashboard works under any path prefix.
import type {
  ClusterStatus,
  OptimizationResult,
  PerformanceMetrics,
  Problem,
  Workflow,
  WorkflowCreate,
  WorkflowList,
  WorkflowState,
} from "./types";

export const API = "api/distributed";
const TOKEN_KEY = "hive.token";

export function getToken(): string {
  try {
    return window.localStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}

export function setToken(token: string): void {
  if (token) window.localStorage.setItem(TOKEN_KEY, token);
  else window.localStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem;

  constructor(problem: Problem) {
    super(problem.detail || problem.title || `HTTP ${problem.status}`);
    this.name = "ApiError";
    this.status = problem.status;
    this.problem = problem;
  }
}

function isProblem(value: unknown): value is Problem {
  return typeof value === "object" && value !== null && typeof (value as Problem).status === "number";
}

export async function request<T>(path: string, init: RequestInit = {}): Promise<T> {
  const headers = new Headers(init.headers);
  headers.set("Accept", "application/json, application/problem+json");
  if (init.body !== undefined) headers.set("Content-Type", "application/json");
  const token = getToken();
  if (token) headers.set("Authorization", `Bearer ${token}`);
  let response: Response;
  try {
    response = await fetch(path, { ...init, headers });
  } catch (err) {
    throw new ApiError({ title: "Network error", status: 0, detail: `gateway unreachable: ${String(err)}` });
  }
  const text = await response.text();
  let body: unknown = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  }
  if (!response.ok) {
    throw new ApiError(
      isProblem(body)
        ? body
        : { title: response.statusText || "Error", status: response.status, detail: typeof body === "string" ? body : "" },
    );
  }
  return body as T;
}

export interface ListFilter {
  state?: WorkflowState | "";
  pageSize?: number;
  pageToken?: string;
}

export const api = {
  submitWorkflow: (body: WorkflowCreate) =>
    request<Workflow>(`${API}/workflows`, { method: "POST", body: JSON.stringify(body) }),
  listWorkflows: ({ state, pageSize = 50, pageToken }: ListFilter = {}) => {
    const q = new URLSearchParams({ page_size: String(pageSize) });
    if (state) q.set("state", state);
    if (pageToken) q.set("page_token", pageToken);
    return request<WorkflowList>(`${API}/workflows?${q.toString()}`);
  },
  getWorkflow: (id: string) => request<Workflow>(`${API}/workflows/${encodeURIComponent(id)}`),
  cancelWorkflow: (id: string, reason = "cancelled from the dashboard") =>
    request<Workflow>(`${API}/workflows/${encodeURIComponent(id)}/cancel`, {
      method: "POST",
      body: JSON.stringify({ reason }),
    }),
  clusterStatus: () => request<ClusterStatus>(`${API}/cluster/status`),
  performance: () => request<PerformanceMetrics>(`${API}/performance/metrics`),
  optimize: (dryRun: boolean) =>
    request<OptimizationResult>(`${API}/cluster/optimize`, {
      method: "POST",
      body: JSON.stringify({ dry_run: dryRun }),
    }),
};

/**
 * Inline messages for a form from a problem: the gateway's own validation lists
 * `errors` with fields like `body.name`; the coordinator's refusals (400) name the field
 * at the start of `detail` ("pipeline: unknown pipeline 'x'; known: ..."). Anything that
 * names no known field goes under `_form`.
 */
export function fieldMessages(problem: Problem, fields: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  const add = (field: string, message: string) => {
    out[field] = out[field] ? `${out[field]}; ${message}` : message;
  };
  for (const error of problem.errors ?? []) {
    const field = error.field.replace(/^body\./, "");
    add(fields.includes(field) ? field : "_form", fields.includes(field) ? error.reason : `${error.field}: ${error.reason}`);
  }
  if (!problem.errors?.length) {
    const match = /^([a-z_]+): (.+)$/s.exec(problem.detail ?? "");
    if (match?.[1] && match[2] && fields.includes(match[1])) add(match[1], match[2]);
    else add("_form", problem.detail || problem.title);
  }
  return out;
}
