// The Performance view: throughput, queue length, latency percentiles and utilisation
// per node over time (samples of /performance/metrics and the cluster, plus telemetry
// events), the bottlenecks the coordinator found, and the optimizer's plan on demand.
import { useState } from "react";
import { ApiError, api } from "../api";
import { percent, rate, seconds } from "../format";
import type { Sample } from "../store";
import type { Finding, OptimizationResult, PerformanceMetrics } from "../types";
import { LineChart, type Series } from "./LineChart";

const PALETTE = ["#4f9cf9", "#f5a524", "#17c964", "#f31260", "#9353d3", "#06b7db", "#ff7a45", "#a3e635"];

function series(history: Sample[], name: string, color: string, pick: (s: Sample) => number): Series {
  return { name, color, points: history.map((s) => [s.t, pick(s)]) };
}

export function Findings({ findings }: { findings: Finding[] }) {
  if (!findings.length) return <p className="muted small">No bottlenecks found.</p>;
  return (
    <ul className="findings">
      {findings.map((f, i) => (
        <li key={`${f.kind}-${f.subject}-${i}`} className={`finding sev-${f.severity}`}>
          <span className={`badge sev-${f.severity}`}>{f.severity}</span> <strong>{f.kind.replace(/_/g, " ")}</strong>
          {f.subject ? <> · {f.subject}</> : null}
          <div className="small">{f.evidence}</div>
          {f.recommendation ? <div className="small muted">→ {f.recommendation}</div> : null}
        </li>
      ))}
    </ul>
  );
}

export function OptimizePanel() {
  const [result, setResult] = useState<OptimizationResult | null>(null);
  const [message, setMessage] = useState("");
  const [busy, setBusy] = useState(false);

  const run = async () => {
    setBusy(true);
    setMessage("");
    try {
      setResult(await api.optimize(true));
    } catch (err) {
      setResult(null);
      if (err instanceof ApiError && err.status === 501) {
        setMessage("This coordinator has no optimizer yet (501 Not Implemented).");
      } else {
        setMessage(err instanceof ApiError ? `Optimizer failed: ${err.status} ${err.message}` : String(err));
      }
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="card" aria-label="Optimizer">
      <div className="card-title">
        <h2>Optimizer</h2>
        <button className="primary" onClick={() => void run()} disabled={busy}>
          {busy ? "Planning…" : "Plan optimization (dry run)"}
        </button>
      </div>
      {message ? (
        <p className="notice" role="status">
          {message}
        </p>
      ) : null}
      {result ? (
        <div data-testid="optimize-plan">
          <h3>Plan {result.applied ? "(applied)" : "(not applied)"}</h3>
          {result.actions.length === 0 ? (
            <p className="muted small">Nothing to change: the cluster is balanced.</p>
          ) : (
            <table className="plan">
              <thead>
                <tr>
                  <th>Action</th>
                  <th>Where</th>
                  <th>Model</th>
                  <th>Change</th>
                  <th>Why</th>
                </tr>
              </thead>
              <tbody>
                {result.actions.map((a, i) => (
                  <tr key={i}>
                    <td>{a.kind.replace(/_/g, " ")}</td>
                    <td>
                      {a.node}
                      {a.endpoint_id ? `/${a.endpoint_id}` : ""}
                    </td>
                    <td>{a.model || "–"}</td>
                    <td>{a.before || a.after ? `${a.before || "–"} → ${a.after || "–"}` : "–"}</td>
                    <td className="small">{a.reason}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <h3>Findings</h3>
          <Findings findings={result.findings} />
        </div>
      ) : null}
    </section>
  );
}

export function PerformanceView({
  history,
  metrics,
  metricsError,
}: {
  history: Sample[];
  metrics: PerformanceMetrics | null;
  metricsError: string;
}) {
  const nodes = [...new Set(history.flatMap((s) => Object.keys(s.utilization)))].sort();
  return (
    <div className="performance">
      {metricsError ? <p className="notice">{metricsError}</p> : null}
      <section className="kpis" aria-label="Performance summary">
        <div className="kpi">
          <span className="kpi-value">{metrics ? rate(metrics.tokens_per_second, "tok/s") : "–"}</span>
          <span className="kpi-label">throughput</span>
        </div>
        <div className="kpi">
          <span className="kpi-value">{metrics ? rate(metrics.tasks_per_second, "tasks/s") : "–"}</span>
          <span className="kpi-label">tasks</span>
        </div>
        <div className="kpi">
          <span className="kpi-value">
            {metrics ? `${seconds(metrics.completion_seconds.p50)} / ${seconds(metrics.completion_seconds.p95)}` : "–"}
          </span>
          <span className="kpi-label">task latency p50 / p95</span>
        </div>
        <div className="kpi">
          <span className="kpi-value">{metrics ? seconds(metrics.queue_seconds.p95) : "–"}</span>
          <span className="kpi-label">queue wait p95</span>
        </div>
        <div className="kpi">
          <span className="kpi-value">{metrics ? `${metrics.tasks_succeeded} / ${metrics.tasks_failed}` : "–"}</span>
          <span className="kpi-label">tasks ok / failed</span>
        </div>
        <div className="kpi">
          <span className="kpi-value">{metrics ? percent(metrics.utilization_percent) : "–"}</span>
          <span className="kpi-label">cluster utilisation</span>
        </div>
      </section>
      <div className="charts">
        <LineChart
          title="Throughput"
          unit=" tok/s"
          series={[series(history, "tokens/s", PALETTE[0] ?? "#4f9cf9", (s) => s.tokensPerSecond)]}
        />
        <LineChart
          title="Queue length"
          series={[
            series(history, "queued", PALETTE[1] ?? "#f5a524", (s) => s.queued),
            series(history, "running", PALETTE[2] ?? "#17c964", (s) => s.running),
          ]}
        />
        <LineChart
          title="Task latency percentiles"
          unit=" s"
          series={[
            series(history, "p50", PALETTE[0] ?? "#4f9cf9", (s) => s.p50),
            series(history, "p95", PALETTE[1] ?? "#f5a524", (s) => s.p95),
            series(history, "p99", PALETTE[3] ?? "#f31260", (s) => s.p99),
          ]}
        />
        <LineChart
          title="GPU utilisation per node"
          unit="%"
          fixedMax={100}
          series={nodes.map((n, i) => series(history, n, PALETTE[i % PALETTE.length] ?? "#888", (s) => s.utilization[n] ?? 0))}
        />
      </div>
      <div className="perf-bottom">
        <section className="card" aria-label="Per node">
          <h2>Per node</h2>
          <table className="plan">
            <thead>
              <tr>
                <th>Node</th>
                <th>Utilisation</th>
                <th>Speed</th>
                <th>Tasks ok / failed</th>
              </tr>
            </thead>
            <tbody>
              {(metrics?.nodes ?? []).map((n) => (
                <tr key={n.node}>
                  <td>{n.node}</td>
                  <td>{percent(n.utilization_percent)}</td>
                  <td>{rate(n.tokens_per_second, "tok/s")}</td>
                  <td>
                    {n.tasks_succeeded} / {n.tasks_failed}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <h3>Bottlenecks</h3>
          <Findings findings={metrics?.findings ?? []} />
        </section>
        <OptimizePanel />
      </div>
    </div>
  );
}
