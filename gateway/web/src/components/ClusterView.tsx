// The Cluster view: every node with its state, specializations, GPUs (utilisation and
// VRAM bars, temperature), Ollama endpoints and the models they serve and have loaded;
// joins, losses and degradations as they happen. A degraded node (heartbeating, but no
// Ollama endpoint of it healthy) says so on its card: it gets no work until one recovers.
// The coordinators (several on PostgreSQL: the leader and its standbys) head the view.
import { bytes, clock, label, percent } from "../format";
import type { ClusterState } from "../store";
import type { ClusterNode, Coordinator, Gpu } from "../types";
import { Meter, StateBadge } from "./Badge";

function temperatureTone(c: number): string {
  return c >= 85 ? "hot" : c >= 70 ? "warm" : "ok";
}

function GpuRow({ gpu }: { gpu: Gpu }) {
  return (
    <div className="gpu" data-testid="gpu">
      <div className="gpu-head">
        <span>
          #{gpu.index} {gpu.name}
        </span>
        <span className={`temp ${temperatureTone(gpu.temperature_celsius)}`} title="temperature">
          {gpu.temperature_celsius.toFixed(0)} °C
        </span>
        <span className="muted small">{gpu.power_watts.toFixed(0)} W</span>
        {gpu.throttled ? <span className="badge state-suspect">throttled</span> : null}
      </div>
      <Meter value={gpu.utilization_percent} max={100} label={`util ${percent(gpu.utilization_percent)}`} />
      <Meter
        value={gpu.memory_used_bytes}
        max={gpu.memory_total_bytes}
        label={`VRAM ${bytes(gpu.memory_used_bytes)} / ${bytes(gpu.memory_total_bytes)}`}
      />
    </div>
  );
}

export function NodeCard({ node }: { node: ClusterNode }) {
  return (
    <article className={`card node node-${node.state}`} data-testid={`node-${node.name}`} data-state={node.state} aria-label={`Node ${node.name}`}>
      <div className="card-title">
        <h3>{node.name}</h3>
        <div>
          <StateBadge state={node.state} />
          {node.draining ? <span className="badge state-suspect">draining</span> : null}
        </div>
      </div>
      {node.state === "degraded" ? (
        <div className="error small" role="status" data-testid="degraded">
          Every Ollama endpoint is unhealthy: this node gets no work until one recovers.
        </div>
      ) : null}
      <div className="chips">
        {node.specializations.map((s) => (
          <span key={s} className="chip">
            {label(s)}
          </span>
        ))}
      </div>
      <div className="muted small">
        agent {node.agent_address} · {node.telemetry_provider} telemetry · {node.running_tasks} running · heartbeat{" "}
        {clock(node.last_heartbeat)}
        {node.reconnects ? ` · ${node.reconnects} reconnects` : ""}
      </div>
      <div className="gpus">
        {node.gpus.map((g) => (
          <GpuRow key={g.index} gpu={g} />
        ))}
      </div>
      <div className="endpoints">
        {node.endpoints.map((e) => {
          const loaded = new Set(e.loaded_models.map((m) => m.name));
          return (
            <div className="endpoint" key={e.id}>
              <div>
                <strong>{e.id}</strong> <span className="muted small">{e.url}</span>{" "}
                <span className={`dot ${e.healthy ? "ok" : "bad"}`} title={e.healthy ? "healthy" : e.error || "unhealthy"} />{" "}
                <span className="muted small">
                  {e.in_flight}/{e.num_parallel} slots · GPUs {e.gpu_indices.join(", ")}
                  {e.version ? ` · ollama ${e.version}` : ""}
                </span>
                {e.hive_cluster ? (
                  <span className="chip peer" title="another Hive cluster's gateway (federation)">
                    Hive cluster {e.hive_cluster}
                  </span>
                ) : null}
              </div>
              <div className="chips">
                {e.models.map((m) => {
                  const vram = e.loaded_models.find((l) => l.name === m)?.size_vram_bytes;
                  return (
                    <span key={m} className={`chip model ${loaded.has(m) ? "loaded" : ""}`} title={loaded.has(m) ? "loaded" : "on disk"}>
                      {m}
                      {vram ? ` · ${bytes(vram)}` : ""}
                    </span>
                  );
                })}
              </div>
              {e.error ? <div className="error small">{e.error}</div> : null}
            </div>
          );
        })}
      </div>
    </article>
  );
}

/** Which coordinator leads, its epoch and lease age; the standbys and the gone ones. */
export function Coordinators({ coordinators }: { coordinators: Coordinator[] }) {
  if (coordinators.length === 0) return null;
  return (
    <section className="card coordinators" aria-label="Coordinators">
      <h3>Coordinators</h3>
      <ul>
        {coordinators.map((c) => (
          <li key={c.address} data-testid={`coordinator-${c.address}`} data-role={c.role}>
            <strong>{c.address}</strong> <StateBadge state={c.role} />{" "}
            <span className="muted small">
              epoch {c.epoch}
              {c.role === "leader" ? ` · lease renewed ${c.lease_age_seconds.toFixed(1)} s ago` : ` · seen ${c.seen_age_seconds.toFixed(1)} s ago`}
            </span>
          </li>
        ))}
      </ul>
    </section>
  );
}

export function ClusterView({ cluster }: { cluster: ClusterState }) {
  const nodes = Object.values(cluster.nodes).sort((a, b) => a.name.localeCompare(b.name));
  const s = cluster.summary;
  const degraded = nodes.filter((n) => n.state === "degraded").length;
  return (
    <div className="cluster">
      <section className="kpis" aria-label="Cluster summary">
        <div className="kpi">
          <span className="kpi-value" data-testid="nodes-healthy">
            {nodes.filter((n) => n.state === "healthy").length}/{nodes.length}
          </span>
          <span className="kpi-label">nodes healthy</span>
          {degraded ? (
            <span className="badge state-degraded" data-testid="nodes-degraded" title="heartbeating, but no healthy Ollama endpoint">
              {degraded} degraded
            </span>
          ) : null}
        </div>
        <div className="kpi">
          <span className="kpi-value">{s?.gpus ?? "–"}</span>
          <span className="kpi-label">GPUs</span>
        </div>
        <div className="kpi">
          <span className="kpi-value">{s ? `${bytes(s.vram_used_bytes)} / ${bytes(s.vram_total_bytes)}` : "–"}</span>
          <span className="kpi-label">VRAM used</span>
        </div>
        <div className="kpi">
          <span className="kpi-value">{s?.endpoints ?? "–"}</span>
          <span className="kpi-label">Ollama endpoints</span>
        </div>
        <div className="kpi">
          <span className="kpi-value">{s ? `${s.running_tasks} / ${s.queued_tasks}` : "–"}</span>
          <span className="kpi-label">running / queued tasks</span>
        </div>
      </section>
      <Coordinators coordinators={cluster.coordinators} />
      <div className="cluster-body">
        <div className="nodes">
          {nodes.length ? nodes.map((n) => <NodeCard key={n.name} node={n} />) : <p className="muted">No nodes have registered.</p>}
        </div>
        <aside className="card log" aria-label="Node events">
          <h3>Node events</h3>
          {cluster.log.length === 0 ? <p className="muted small">Joins, losses and degradations appear here as they happen.</p> : null}
          <ul>
            {cluster.log.map((entry, i) => (
              <li key={`${entry.at}-${entry.node}-${i}`} className={`log-${entry.what}`} data-testid="node-event">
                <span className="muted small">{clock(entry.at)}</span> <strong>{entry.node}</strong> {entry.what}
              </li>
            ))}
          </ul>
        </aside>
      </div>
    </div>
  );
}
