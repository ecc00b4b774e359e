import { clusterReducer, emptyCluster, pushSample, sample } from "./store";
import { node } from "./test/fixtures";

const summary = {
  nodes_total: 1,
  nodes_healthy: 1,
  nodes_degraded: 0,
  gpus: 1,
  vram_total_bytes: 1,
  vram_used_bytes: 0,
  endpoints: 1,
  models: [],
  running_tasks: 2,
  queued_tasks: 3,
};

describe("clusterReducer", () => {
  it("logs a node lost and back, but not the snapshot of joins each subscription starts with", () => {
    let state = clusterReducer(emptyCluster, { type: "event", event: { type: "node_joined", at: null, node: node() }, now: 1 });
    expect(state.log).toEqual([]);
    state = clusterReducer(state, { type: "status", summary, nodes: [node()], now: 2 });
    state = clusterReducer(state, { type: "event", event: { type: "node_joined", at: null, node: node() }, now: 3 });
    expect(state.log).toEqual([]);
    state = clusterReducer(state, { type: "event", event: { type: "node_lost", at: null, node: node({ state: "lost" }) }, now: 4 });
    expect(state.nodes.ROSEWOOD?.state).toBe("lost");
    state = clusterReducer(state, { type: "event", event: { type: "node_joined", at: null, node: node() }, now: 5 });
    state = clusterReducer(state, {
      type: "event",
      event: { type: "node_joined", at: null, node: node({ name: "NEWNODE" }) },
      now: 6,
    });
    expect(state.log.map((e) => `${e.node} ${e.what}`)).toEqual(["NEWNODE joined", "ROSEWOOD joined", "ROSEWOOD lost"]);
  });

  it("notices a change a poll sees", () => {
    let state = clusterReducer(emptyCluster, { type: "status", summary, nodes: [node()], now: 1 });
    state = clusterReducer(state, { type: "status", summary, nodes: [node({ state: "suspect" })], now: 2 });
    expect(state.log).toEqual([{ at: 2, node: "ROSEWOOD", what: "suspect" }]);
  });
});

describe("samples", () => {
  it("take the queue from the cluster and utilisation per node, bounded in number", () => {
    const cluster = clusterReducer(emptyCluster, { type: "status", summary, nodes: [node(), node({ name: "GONE", state: "lost" })], now: 1 });
    const s = sample(10, null, cluster);
    expect(s).toMatchObject({ t: 10, queued: 3, running: 2, tokensPerSecond: 0, utilization: { ROSEWOOD: 75, GONE: 0 } });
    let history = [s];
    for (let i = 0; i < 5; i++) history = pushSample(history, { ...s, t: 11 + i }, 3);
    expect(history.map((h) => h.t)).toEqual([13, 14, 15]);
  });
});
