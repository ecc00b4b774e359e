// One workflow: header with cancel, the stage timeline, each stage's output and the
// artifacts, highlighted. Refreshed on its live events, and polled while it runs in case
// the socket is down.
import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError, api } from "../api";
import { clock, label } from "../format";
import { languageForPath } from "../highlight";
import { useLiveEvents, useWatchWorkflows } from "../live-context";
import { TERMINAL_WORKFLOW_STATES, type Workflow } from "../types";
import { StateBadge } from "./Badge";
import { CodeBlock, Output } from "./Code";
import { lastTask, StageTimeline } from "./StageTimeline";

const POLL_MS = 3000;
const REFRESH_DEBOUNCE_MS = 150;

export function WorkflowDetail({ id, onClose }: { id: string; onClose: () => void }) {
  const [workflow, setWorkflow] = useState<Workflow | null>(null);
  const [error, setError] = useState<string>("");
  const [cancelError, setCancelError] = useState<string>("");
  const [stage, setStage] = useState<string>("");
  const [now, setNow] = useState(() => Date.now());
  const pending = useRef<ReturnType<typeof setTimeout> | null>(null);

  const load = useCallback(async () => {
    try {
      const w = await api.getWorkflow(id);
      setWorkflow(w);
      setError("");
    } catch (err) {
      setError(err instanceof ApiError ? `${err.status} ${err.message}` : String(err));
    }
  }, [id]);

  const refresh = useCallback(() => {
    if (pending.current !== null) return;
    pending.current = setTimeout(() => {
      pending.current = null;
      void load();
    }, REFRESH_DEBOUNCE_MS);
  }, [load]);

  // The parent keys this component by id, so a new id starts from empty state.
  useEffect(() => {
    // eslint-disable-next-line react-hooks/set-state-in-effect -- state is set after the await
    void load();
    return () => {
      if (pending.current !== null) clearTimeout(pending.current);
      pending.current = null;
    };
  }, [load]);

  const terminal = workflow ? TERMINAL_WORKFLOW_STATES.has(workflow.state) : false;
  useEffect(() => {
    if (terminal) return;
    const timer = setInterval(() => {
      setNow(Date.now());
      void load();
    }, POLL_MS);
    return () => clearInterval(timer);
  }, [terminal, load]);

  useWatchWorkflows("detail", terminal ? [] : [id]);
  useLiveEvents((event) => {
    if ("workflow_id" in event && event.workflow_id === id) {
      setNow(Date.now());
      refresh();
    }
  });

  const cancel = async () => {
    setCancelError("");
    try {
      setWorkflow(await api.cancelWorkflow(id));
    } catch (err) {
      setCancelError(err instanceof ApiError ? err.message : String(err));
    }
  };

  if (!workflow) {
    return (
      <section className="card detail">
        <button className="link" onClick={onClose}>
          ← all workflows
        </button>
        <p className={error ? "error" : "muted"}>{error || "Loading…"}</p>
      </section>
    );
  }

  const shown = workflow.stages.find((s) => s.name === stage) ?? workflow.stages.find((s) => lastTask(s)?.output) ?? workflow.stages[0];
  const output = shown ? (lastTask(shown)?.output ?? "") : "";

  return (
    <section className="card detail" aria-label={`Workflow ${workflow.name}`} data-testid="workflow-detail" data-state={workflow.state}>
      <div className="card-title">
        <div>
          <button className="link" onClick={onClose}>
            ← all workflows
          </button>
          <h2>
            {workflow.name} <StateBadge state={workflow.state} />
          </h2>
          <div className="muted small">
            {workflow.id} · pipeline {workflow.pipeline || "full"} · {workflow.language || "any language"} · priority{" "}
            {workflow.priority} · created {clock(workflow.created_at)}
            {workflow.finished_at ? ` · finished ${clock(workflow.finished_at)}` : ""}
          </div>
        </div>
        {!terminal ? (
          <button className="danger" onClick={() => void cancel()}>
            Cancel workflow
          </button>
        ) : null}
      </div>
      {cancelError ? <p className="error">{cancelError}</p> : null}
      {workflow.error ? <p className="error">{workflow.error}</p> : null}
      <p className="requirements">{workflow.requirements}</p>
      <h3>
        Stages{" "}
        <span className="muted small" data-testid="stages-progress">
          {workflow.stages_finished}/{workflow.stages_total} finished
        </span>
      </h3>
      <StageTimeline workflow={workflow} now={now} />
      <h3>Outputs</h3>
      <div className="tabs small-tabs" role="tablist" aria-label="Stage outputs">
        {workflow.stages.map((s) => (
          <button
            key={s.name}
            role="tab"
            aria-selected={s.name === shown?.name}
            className={s.name === shown?.name ? "active" : ""}
            onClick={() => setStage(s.name)}
          >
            {s.name}
          </button>
        ))}
      </div>
      <Output text={output} language={workflow.language} />
      {workflow.artifacts.length ? (
        <>
          <h3>Artifacts</h3>
          {workflow.artifacts.map((a) => (
            <details key={`${a.stage}/${a.path}`} className="artifact">
              <summary>
                <code>{a.path}</code> <span className="muted small">{label(a.kind)} · from {a.stage}</span>
              </summary>
              <CodeBlock code={a.content} language={languageForPath(a.path)} />
            </details>
          ))}
        </>
      ) : null}
    </section>
  );
}
