// Each stage of a workflow in order: its state, the node and endpoint that ran it, how
// long it queued and ran, tokens in and out, and a bar on the workflow's own time axis.
import { between, clock, label, seconds } from "../format";
import type { Stage, TaskRecord, Workflow } from "../types";
import { StateBadge } from "./Badge";

export function lastTask(stage: Stage): TaskRecord | undefined {
  return stage.tasks[stage.tasks.length - 1];
}

function span(workflow: Workflow, now: number): [number, number] {
  let start = Infinity;
  let end = -Infinity;
  for (const stage of workflow.stages) {
    for (const t of stage.tasks) {
      const s = Date.parse(t.started_at ?? t.queued_at ?? "");
      if (!Number.isNaN(s)) start = Math.min(start, s);
      const e = t.finished_at ? Date.parse(t.finished_at) : t.started_at ? now : NaN;
      if (!Number.isNaN(e)) end = Math.max(end, e);
    }
  }
  return Number.isFinite(start) && end > start ? [start, end] : [0, 0];
}

/** `now` draws running stages up to that moment (passed in: rendering stays pure). */
export function StageTimeline({ workflow, now }: { workflow: Workflow; now: number }) {
  const [t0, t1] = span(workflow, now);
  return (
    <table className="timeline" aria-label="Stage timeline">
      <thead>
        <tr>
          <th>Stage</th>
          <th>State</th>
          <th>Node</th>
          <th>Queued</th>
          <th>Ran</th>
          <th>Tokens in / out</th>
          <th>Speed</th>
          <th className="bar-col">Timeline</th>
        </tr>
      </thead>
      <tbody>
        {workflow.stages.map((stage) => {
          const task = lastTask(stage);
          const ran = task ? between(task.started_at, task.finished_at ?? (task.started_at ? new Date(now).toISOString() : null)) : null;
          const waited = task ? between(task.queued_at, task.started_at) : null;
          const evalSeconds = (task?.stats.eval_duration_ns ?? 0) / 1e9;
          const speed = task && evalSeconds > 0 ? task.stats.eval_count / evalSeconds : null;
          const start = task?.started_at ? Date.parse(task.started_at) : null;
          const end = task?.finished_at ? Date.parse(task.finished_at) : start !== null ? now : null;
          const left = start !== null && t1 > t0 ? ((start - t0) / (t1 - t0)) * 100 : 0;
          const width = start !== null && end !== null && t1 > t0 ? Math.max(1, ((end - start) / (t1 - t0)) * 100) : 0;
          return (
            <tr key={stage.name} data-testid={`stage-${stage.name}`} data-state={stage.state}>
              <td>
                <strong>{stage.name}</strong>
                <div className="muted small">
                  {label(stage.type)} · {stage.model}
                  {stage.depends_on.length ? ` · after ${stage.depends_on.join(", ")}` : ""}
                </div>
              </td>
              <td>
                <StateBadge state={stage.state} />
                {task && task.attempt > 1 ? <div className="muted small">attempt {task.attempt}</div> : null}
              </td>
              <td data-testid={`stage-${stage.name}-node`}>
                {task?.node ? (
                  <>
                    {task.node}
                    <div className="muted small">{task.endpoint_id}</div>
                  </>
                ) : (
                  <span className="muted">–</span>
                )}
              </td>
              <td>{waited !== null ? seconds(waited) : "–"}</td>
              <td title={task?.started_at ? `started ${clock(task.started_at)}` : undefined}>
                {ran !== null ? seconds(ran) : "–"}
              </td>
              <td>{task ? `${task.stats.prompt_eval_count} / ${task.stats.eval_count}` : "–"}</td>
              <td>{speed !== null ? `${speed.toFixed(1)} tok/s` : "–"}</td>
              <td className="bar-col">
                <div className="gantt">
                  {width > 0 ? (
                    <div className={`gantt-bar state-${stage.state}`} style={{ left: `${left}%`, width: `${Math.min(width, 100 - left)}%` }} />
                  ) : null}
                </div>
                {task?.error ? <div className="error small">{task.error}</div> : null}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
