import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import type { Sample } from "../store";
import { fetchReplying } from "../test/fixtures";
import { OptimizePanel, PerformanceView } from "./PerformanceView";

function history(n: number): Sample[] {
  return Array.from({ length: n }, (_, i) => ({
    t: i * 2000,
    tokensPerSecond: 100 + i,
    tasksPerSecond: 1,
    queued: i % 3,
    running: 2,
    p50: 1,
    p95: 2,
    p99: 3,
    queueP95: 0.1,
    utilization: { IRONWOOD: 50, WALNUT: 90 },
  }));
}

describe("PerformanceView", () => {
  it("draws the four charts over time", () => {
    render(<PerformanceView history={history(5)} metrics={null} metricsError="" />);
    for (const title of ["Throughput", "Queue length", "Task latency percentiles", "GPU utilisation per node"]) {
      expect(screen.getByRole("img", { name: `${title} over the last 8 s` })).toBeInTheDocument();
    }
    expect(screen.getByText("WALNUT")).toBeInTheDocument();
  });

  it("waits for a second sample before drawing", () => {
    render(<PerformanceView history={history(1)} metrics={null} metricsError="" />);
    expect(screen.getAllByText("Collecting samples…")).toHaveLength(4);
  });
});

describe("OptimizePanel", () => {
  it("asks for a dry run and shows the plan and findings", async () => {
    const { calls } = fetchReplying([
      200,
      {
        applied: false,
        actions: [
          { kind: "warm_model", node: "IRONWOOD", endpoint_id: "gtx1070", model: "codellama:13b", reason: "forecast demand", before: "", after: "loaded" },
        ],
        findings: [
          { kind: "hot_node", severity: "warning", subject: "WALNUT", evidence: "util 97% for 5 min", recommendation: "shift code generation", detected_at: null },
        ],
      },
    ]);
    render(<OptimizePanel />);
    await userEvent.click(screen.getByRole("button", { name: "Plan optimization (dry run)" }));
    expect(await screen.findByTestId("optimize-plan")).toHaveTextContent("warm model");
    expect(screen.getByText("IRONWOOD/gtx1070")).toBeInTheDocument();
    expect(screen.getByText("util 97% for 5 min")).toBeInTheDocument();
    expect(JSON.parse(calls[0]?.init?.body as string)).toEqual({ dry_run: true });
  });

  it("says so plainly when the coordinator has no optimizer", async () => {
    fetchReplying([501, { title: "Not Implemented", status: 501, detail: "optimizer not available", grpc_status: "UNIMPLEMENTED" }]);
    render(<OptimizePanel />);
    await userEvent.click(screen.getByRole("button", { name: "Plan optimization (dry run)" }));
    expect(await screen.findByRole("status")).toHaveTextContent("no optimizer yet (501");
    expect(screen.queryByTestId("optimize-plan")).toBeNull();
  });
});
