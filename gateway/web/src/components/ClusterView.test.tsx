import { render, screen, within } from "@testing-library/react";
import { clusterReducer, emptyCluster } from "../store";
import { node } from "../test/fixtures";
import { ClusterView } from "./ClusterView";

const peer = node({
  name: "LAB-B",
  endpoints: node().endpoints.map((e) => ({ ...e, id: "hive", hive_cluster: "lab-b" })),
});

describe("ClusterView", () => {
  it("shows each node's state, GPUs, endpoints and loaded models, and losses as they come", () => {
    let cluster = clusterReducer(emptyCluster, {
      type: "status",
      summary: {
        nodes_total: 3,
        nodes_healthy: 3,
        nodes_degraded: 0,
        gpus: 2,
        vram_total_bytes: 16 * 2 ** 30,
        vram_used_bytes: 6 * 2 ** 30,
        endpoints: 2,
        models: [],
        running_tasks: 2,
        queued_tasks: 0,
      },
      nodes: [node(), node({ name: "ACACIA" }), peer],
      now: 1,
    });
    cluster = clusterReducer(cluster, {
      type: "event",
      event: { type: "node_lost", at: null, node: node({ name: "ACACIA", state: "lost" }) },
      now: Date.parse("2026-11-25T17:00:00Z"),
    });
    render(<ClusterView cluster={cluster} />);
    const rosewood = screen.getByTestId("node-ROSEWOOD");
    expect(rosewood).toHaveAttribute("data-state", "healthy");
    expect(within(rosewood).getByText("code review")).toBeInTheDocument();
    expect(within(rosewood).getByRole("meter", { name: "util 75%" })).toHaveAttribute("aria-valuenow", "75");
    expect(within(rosewood).getByRole("meter", { name: "VRAM 6.0 GiB / 8.0 GiB" })).toBeInTheDocument();
    expect(within(rosewood).getByText("71 °C")).toHaveClass("warm");
    expect(within(rosewood).getByText("qwen2.5-coder:14b · 9.0 GiB")).toHaveClass("loaded");
    expect(within(rosewood).getByText("llama3.1:8b")).not.toHaveClass("loaded");
    expect(within(rosewood).getByText(/2\/4 slots/)).toBeInTheDocument();
    expect(screen.getByTestId("node-ACACIA")).toHaveAttribute("data-state", "lost");
    expect(screen.getByTestId("nodes-healthy")).toHaveTextContent("2/3");
    expect(within(screen.getByTestId("node-LAB-B")).getByText("Hive cluster lab-b")).toHaveClass("peer");
    expect(within(rosewood).queryByText(/Hive cluster/)).not.toBeInTheDocument();
    expect(screen.getByTestId("node-event")).toHaveTextContent("ACACIA lost");
    expect(screen.queryByTestId("nodes-degraded")).not.toBeInTheDocument();
    expect(screen.queryByTestId("degraded")).not.toBeInTheDocument();
  });

  it("shows a node whose every endpoint is unhealthy as degraded, with each endpoint's error, and its recovery", () => {
    const summary = {
      nodes_total: 2,
      nodes_healthy: 2,
      nodes_degraded: 0,
      gpus: 2,
      vram_total_bytes: 16 * 2 ** 30,
      vram_used_bytes: 0,
      endpoints: 2,
      models: [],
      running_tasks: 0,
      queued_tasks: 0,
    };
    const broken = node({
      state: "degraded",
      endpoints: node().endpoints.map((e) => ({ ...e, healthy: false, loaded_models: [], error: "OllamaError: /api/ps: 500" })),
    });
    let cluster = clusterReducer(emptyCluster, { type: "status", summary, nodes: [node(), node({ name: "ACACIA" })], now: 1 });
    cluster = clusterReducer(cluster, {
      type: "event",
      event: { type: "node_state_changed", at: null, node: broken },
      now: Date.parse("2026-11-25T17:00:00Z"),
    });
    const { unmount } = render(<ClusterView cluster={cluster} />);
    const rosewood = screen.getByTestId("node-ROSEWOOD");
    expect(rosewood).toHaveAttribute("data-state", "degraded");
    expect(rosewood).toHaveClass("node-degraded");
    expect(within(rosewood).getByTestId("degraded")).toHaveTextContent(/every Ollama endpoint is unhealthy/i);
    expect(within(rosewood).getByText("OllamaError: /api/ps: 500")).toBeInTheDocument();
    expect(within(rosewood).getByTitle("OllamaError: /api/ps: 500")).toHaveClass("bad");
    expect(screen.getByTestId("nodes-healthy")).toHaveTextContent("1/2");
    expect(screen.getByTestId("nodes-degraded")).toHaveTextContent("1 degraded");
    expect(screen.getByTestId("node-event")).toHaveTextContent("ROSEWOOD degraded");
    unmount();

    cluster = clusterReducer(cluster, {
      type: "event",
      event: { type: "node_state_changed", at: null, node: node() },
      now: Date.parse("2026-11-25T17:01:00Z"),
    });
    render(<ClusterView cluster={cluster} />);
    expect(screen.getByTestId("node-ROSEWOOD")).toHaveAttribute("data-state", "healthy");
    expect(screen.queryByTestId("degraded")).not.toBeInTheDocument();
    expect(screen.queryByTestId("nodes-degraded")).not.toBeInTheDocument();
    expect(screen.getAllByTestId("node-event")[0]).toHaveTextContent("ROSEWOOD healthy");
  });

  it("shows the leader, its epoch and lease age, and the standbys; nothing for a status without them", () => {
    const summary = {
      nodes_total: 1,
      nodes_healthy: 1,
      nodes_degraded: 0,
      gpus: 1,
      vram_total_bytes: 8 * 2 ** 30,
      vram_used_bytes: 0,
      endpoints: 1,
      models: [],
      running_tasks: 0,
      queued_tasks: 0,
    };
    const coordinators = [
      { address: "coord-b:50051", role: "leader" as const, epoch: 4, lease_age_seconds: 0.3, seen_age_seconds: 0.3 },
      { address: "coord-a:50051", role: "standby" as const, epoch: 4, lease_age_seconds: 0, seen_age_seconds: 0.6 },
      { address: "coord-c:50051", role: "gone" as const, epoch: 3, lease_age_seconds: 0, seen_age_seconds: 42 },
    ];
    const cluster = clusterReducer(emptyCluster, { type: "status", summary, nodes: [node()], coordinators, now: 1 });
    const { unmount } = render(<ClusterView cluster={cluster} />);
    const section = screen.getByRole("region", { name: "Coordinators" });
    const leader = within(section).getByTestId("coordinator-coord-b:50051");
    expect(leader).toHaveAttribute("data-role", "leader");
    expect(leader).toHaveTextContent("epoch 4 · lease renewed 0.3 s ago");
    expect(within(section).getByTestId("coordinator-coord-a:50051")).toHaveAttribute("data-role", "standby");
    expect(within(section).getByTestId("coordinator-coord-c:50051")).toHaveTextContent("seen 42.0 s ago");
    unmount();
    render(<ClusterView cluster={clusterReducer(cluster, { type: "status", summary, nodes: [node()], now: 2 })} />);
    expect(screen.queryByRole("region", { name: "Coordinators" })).not.toBeInTheDocument();
  });
});
