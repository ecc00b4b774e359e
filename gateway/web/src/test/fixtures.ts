// Shapes as the gateway answers them (trimmed from a `hive dev` run).
import type { ClusterNode, Workflow } from "../types";

export function node(overrides: Partial<ClusterNode> = {}): ClusterNode {
  return {
    name: "ROSEWOOD",
    state: "healthy",
    draining: false,
    labels: {},
    specializations: ["testing", "code_review"],
    features: [],
    agent_address: "127.0.0.1:38497",
    agent_version: "0.1.0",
    telemetry_provider: "simulated",
    gpus: [
      {
        index: 0,
        name: "NVIDIA GeForce RTX 2080 SUPER",
        vendor: "nvidia",
        memory_total_bytes: 8 * 2 ** 30,
        memory_used_bytes: 6 * 2 ** 30,
        utilization_percent: 75,
        temperature_celsius: 71,
        power_watts: 142,
        throttled: false,
      },
    ],
    endpoints: [
      {
        id: "rtx",
        url: "http://127.0.0.1:42157",
        gpu_indices: [0],
        num_parallel: 4,
        max_queue: 512,
        version: "0.6.5",
        models: ["qwen2.5-coder:14b", "llama3.1:8b"],
        healthy: true,
        loaded_models: [{ name: "qwen2.5-coder:14b", size_vram_bytes: 9 * 2 ** 30, expires_at: null }],
        in_flight: 2,
        error: "",
      },
    ],
    last_heartbeat: "2026-11-25T17:06:20.124910Z",
    connected_at: "2026-11-25T17:06:17.085797Z",
    reconnects: 0,
    running_tasks: 2,
    ...overrides,
  };
}

export function workflow(overrides: Partial<Workflow> = {}): Workflow {
  return {
    id: "wf-1",
    name: "REST API with Microservices",
    language: "python",
    priority: "normal",
    pipeline: "full",
    state: "running",
    created_at: "2026-11-25T17:06:23.731Z",
    started_at: "2026-11-25T17:06:23.776Z",
    finished_at: null,
    error: "",
    labels: {},
    stages_total: 2,
    stages_finished: 1,
    requirements: "Develop a REST API.",
    stages: [
      {
        name: "generate",
        type: "code_generation",
        model: "codellama:13b",
        depends_on: [],
        state: "succeeded",
        tasks: [
          {
            task_id: "wf-1.generate.1",
            node: "IRONWOOD",
            endpoint_id: "gtx1070",
            attempt: 1,
            state: "succeeded",
            queued_at: "2026-11-25T17:06:23.777Z",
            started_at: "2026-11-25T17:06:23.784Z",
            finished_at: "2026-11-25T17:06:25.284Z",
            stats: {
              prompt_eval_count: 76,
              eval_count: 170,
              total_duration_ns: 1.5e9,
              load_duration_ns: 0,
              prompt_eval_duration_ns: 1e8,
              eval_duration_ns: 2e9,
            },
            output: "Here it is.\n\n```python\ndef add(a, b):\n    return a + b\n```\n",
            error: "",
          },
        ],
      },
      {
        name: "review",
        type: "code_review",
        model: "qwen2.5-coder:14b",
        depends_on: ["generate"],
        state: "queued",
        tasks: [],
      },
    ],
    artifacts: [],
    ...overrides,
  };
}

/** A fetch that answers each call with the next response (status, JSON body). */
export function fetchReplying(...replies: Array<[number, unknown]>) {
  const calls: Array<{ url: string; init: RequestInit | undefined }> = [];
  const fn = vi.fn((url: string, init?: RequestInit) => {
    calls.push({ url, init });
    const [status, body] = replies.shift() ?? [500, { title: "no reply left", status: 500 }];
    const type = status >= 400 ? "application/problem+json" : "application/json";
    return Promise.resolve(new Response(JSON.stringify(body), { status, headers: { "Content-Type": type } }));
  });
  vi.stubGlobal("fetch", fn);
  return { fn, calls };
}
