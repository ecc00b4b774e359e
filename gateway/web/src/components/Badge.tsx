export function StateBadge({ state }: { state: string }) {
  return (
    <span className={`badge state-${state}`} data-state={state}>
      {state}
    </span>
  );
}

/** A horizontal bar: `value` of `max`, with a label. */
export function Meter({ value, max, label, tone }: { value: number; max: number; label: string; tone?: string }) {
  const pct = max > 0 ? Math.max(0, Math.min(100, (value / max) * 100)) : 0;
  const level = tone ?? (pct >= 90 ? "hot" : pct >= 70 ? "warm" : "ok");
  return (
    <div className="meter" role="meter" aria-valuemin={0} aria-valuemax={max} aria-valuenow={value} aria-label={label}>
      <div className={`meter-fill ${level}`} style={{ width: `${pct}%` }} />
      <span className="meter-label">{label}</span>
    </div>
  );
}
