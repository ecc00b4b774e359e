// The Workflows view (the seed's DistributedWorkflows.tsx): submit, list with filters,
// and the selected workflow's detail. The list refreshes on workflow events and polls
// as a fallback; running workflows in view are watched live.
import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError, api } from "../api";
import { clock } from "../format";
import { useLiveEvents, useWatchWorkflows } from "../live-context";
import { TERMINAL_WORKFLOW_STATES, type WorkflowState, type WorkflowSummary } from "../types";
import { StateBadge } from "./Badge";
import { WorkflowDetail } from "./WorkflowDetail";
import { WorkflowForm } from "./WorkflowForm";

const POLL_MS = 5000;
const MAX_WATCHED = 16;
const STATES: WorkflowState[] = ["pending", "running", "succeeded", "failed", "cancelled"];

export function DistributedWorkflows({ selected, onSelect }: { selected: string | null; onSelect: (id: string | null) => void }) {
  const [workflows, setWorkflows] = useState<WorkflowSummary[]>([]);
  const [state, setState] = useState<WorkflowState | "">("");
  const [search, setSearch] = useState("");
  const [error, setError] = useState("");
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);

  const load = useCallback(async () => {
    try {
      const list = await api.listWorkflows({ state, pageSize: 100 });
      setWorkflows(list.workflows);
      setError("");
    } catch (err) {
      setError(err instanceof ApiError ? `Could not list workflows: ${err.message}` : String(err));
    }
  }, [state]);

  useEffect(() => {
    // Fetch on mount and when the filter changes; state is set after the await.
    // eslint-disable-next-line react-hooks/set-state-in-effect
    void load();
    const poll = setInterval(() => void load(), POLL_MS);
    return () => clearInterval(poll);
  }, [load]);

  useLiveEvents((event) => {
    if (event.type === "workflow" || event.type === "stage_finished") {
      if (timer.current === null) {
        timer.current = setTimeout(() => {
          timer.current = null;
          void load();
        }, 200);
      }
    }
  });
  useEffect(() => () => {
    if (timer.current !== null) clearTimeout(timer.current);
  }, []);

  const active = workflows.filter((w) => !TERMINAL_WORKFLOW_STATES.has(w.state)).slice(0, MAX_WATCHED);
  useWatchWorkflows("list", active.map((w) => w.id));

  const needle = search.trim().toLowerCase();
  const shown = needle
    ? workflows.filter((w) => `${w.name} ${w.id} ${w.language} ${w.pipeline}`.toLowerCase().includes(needle))
    : workflows;

  return (
    <div className="workflows">
      <div className="column">
        <WorkflowForm
          onSubmitted={(w) => {
            setWorkflows((list) => [w, ...list.filter((x) => x.id !== w.id)]);
            onSelect(w.id);
          }}
        />
        <section className="card" aria-label="Workflows">
          <div className="card-title">
            <h2>Workflows</h2>
            <div className="filters">
              <input
                type="search"
                placeholder="Filter by name, id, language"
                aria-label="Filter workflows"
                value={search}
                onChange={(e) => setSearch(e.target.value)}
              />
              <select aria-label="State" value={state} onChange={(e) => setState(e.target.value as WorkflowState | "")}>
                <option value="">all states</option>
                {STATES.map((s) => (
                  <option key={s} value={s}>
                    {s}
                  </option>
                ))}
              </select>
            </div>
          </div>
          {error ? <p className="error">{error}</p> : null}
          {shown.length === 0 ? (
            <p className="muted">{workflows.length ? "No workflow matches." : "No workflows yet: submit one above."}</p>
          ) : (
            <ul className="wf-list">
              {shown.map((w) => (
                <li key={w.id}>
                  <button
                    className={`wf-item ${w.id === selected ? "selected" : ""}`}
                    onClick={() => onSelect(w.id)}
                    data-testid={`workflow-${w.id}`}
                  >
                    <span className="wf-name">{w.name}</span>
                    <StateBadge state={w.state} />
                    <span className="muted small">
                      {w.stages_finished}/{w.stages_total} stages · {w.language || "any"} · {w.priority} · {clock(w.created_at)}
                    </span>
                    <progress max={w.stages_total || 1} value={w.stages_finished} aria-label={`${w.name} progress`} />
                  </button>
                </li>
              ))}
            </ul>
          )}
        </section>
      </div>
      <div className="column wide">
        {selected ? (
          <WorkflowDetail key={selected} id={selected} onClose={() => onSelect(null)} />
        ) : (
          <section className="card empty">
            <p className="muted">Select a workflow to see its stages, the nodes that ran them, and their outputs.</p>
          </section>
        )}
      </div>
    </div>
  );
}
