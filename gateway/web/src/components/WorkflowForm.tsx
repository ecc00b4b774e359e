// Submit a workflow. The API is the one judge of input (the form sets no HTML limits of
// its own), and its problem details come back inline under the fields they name.
import { useId, useState, type FormEvent } from "react";
import { ApiError, api, fieldMessages } from "../api";
import { EXAMPLES, KNOWN_PIPELINES } from "../examples";
import type { Workflow, WorkflowCreate } from "../types";

const FIELDS = ["name", "requirements", "language", "priority", "pipeline"] as const;
const EMPTY: WorkflowCreate = { name: "", requirements: "", language: "", priority: "normal", pipeline: "" };

export function WorkflowForm({ onSubmitted }: { onSubmitted: (workflow: Workflow) => void }) {
  const [form, setForm] = useState<WorkflowCreate>(EMPTY);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [busy, setBusy] = useState(false);
  const id = useId();

  const set = (field: keyof WorkflowCreate, value: string) => {
    setForm((f) => ({ ...f, [field]: value }));
    setErrors((e) => {
      const { [field]: _gone, ...rest } = e;
      return rest;
    });
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setErrors({});
    try {
      const workflow = await api.submitWorkflow(form);
      setForm(EMPTY);
      onSubmitted(workflow);
    } catch (err) {
      if (err instanceof ApiError) setErrors(fieldMessages(err.problem, FIELDS));
      else setErrors({ _form: String(err) });
    } finally {
      setBusy(false);
    }
  };

  const field = (name: (typeof FIELDS)[number]) => ({
    id: `${id}-${name}`,
    name,
    "aria-invalid": errors[name] ? true : undefined,
    "aria-describedby": errors[name] ? `${id}-${name}-error` : undefined,
  });
  const message = (name: string) =>
    errors[name] ? (
      <p className="field-error" id={`${id}-${name}-error`} role="alert" data-testid={`error-${name}`}>
        {errors[name]}
      </p>
    ) : null;

  return (
    <form className="card form" onSubmit={(e) => void submit(e)} noValidate aria-label="Submit a workflow">
      <div className="card-title">
        <h2>New workflow</h2>
        <label className="inline">
          Example{" "}
          <select
            aria-label="Load an example"
            value=""
            onChange={(e) => {
              const example = EXAMPLES[Number(e.target.value)];
              if (example) {
                setForm({ ...example });
                setErrors({});
              }
            }}
          >
            <option value="">choose…</option>
            {EXAMPLES.map((ex, i) => (
              <option key={ex.name} value={i}>
                {ex.name}
              </option>
            ))}
          </select>
        </label>
      </div>
      <label htmlFor={`${id}-name`}>Name</label>
      <input {...field("name")} value={form.name} onChange={(e) => set("name", e.target.value)} />
      {message("name")}
      <label htmlFor={`${id}-requirements`}>Requirements</label>
      <textarea
        {...field("requirements")}
        rows={4}
        value={form.requirements}
        onChange={(e) => set("requirements", e.target.value)}
      />
      {message("requirements")}
      <div className="row">
        <div>
          <label htmlFor={`${id}-language`}>Language</label>
          <input
            {...field("language")}
            placeholder="any"
            value={form.language}
            onChange={(e) => set("language", e.target.value)}
          />
          {message("language")}
        </div>
        <div>
          <label htmlFor={`${id}-priority`}>Priority</label>
          <select
            {...field("priority")}
            value={form.priority}
            onChange={(e) => set("priority", e.target.value)}
          >
            <option value="low">low</option>
            <option value="normal">normal</option>
            <option value="high">high</option>
          </select>
          {message("priority")}
        </div>
        <div>
          <label htmlFor={`${id}-pipeline`}>Pipeline</label>
          <input
            {...field("pipeline")}
            list={`${id}-pipelines`}
            placeholder="full"
            value={form.pipeline}
            onChange={(e) => set("pipeline", e.target.value)}
          />
          <datalist id={`${id}-pipelines`}>
            {KNOWN_PIPELINES.map((p) => (
              <option key={p} value={p} />
            ))}
          </datalist>
          {message("pipeline")}
        </div>
      </div>
      {message("_form")}
      <button type="submit" className="primary" disabled={busy}>
        {busy ? "Submitting…" : "Submit workflow"}
      </button>
    </form>
  );
}
