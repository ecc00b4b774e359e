// A small SVG line chart over time: one or more series sharing an x (time) and y axis.
// Hand-drawn rather than a chart library: a few polylines are all the dashboard needs.

export interface Series {
  name: string;
  color: string;
  points: Array<[number, number]>;
}

const W = 560;
const H = 170;
const PAD = { left: 44, right: 8, top: 8, bottom: 20 };

export function niceMax(value: number): number {
  if (!(value > 0)) return 1;
  const exp = 10 ** Math.floor(Math.log10(value));
  const f = value / exp;
  const nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  return nice * exp;
}

function tick(v: number): string {
  if (v === 0) return "0";
  if (Math.abs(v) >= 1000) return `${(v / 1000).toFixed(1)}k`;
  if (Math.abs(v) < 1) return v.toFixed(2);
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

export function LineChart({ title, series, unit = "", fixedMax }: { title: string; series: Series[]; unit?: string; fixedMax?: number }) {
  const all = series.flatMap((s) => s.points);
  const t0 = Math.min(...all.map((p) => p[0]));
  const t1 = Math.max(...all.map((p) => p[0]));
  const yMax = fixedMax ?? niceMax(Math.max(0, ...all.map((p) => p[1])) * 1.05);
  const x = (t: number) => PAD.left + (t1 > t0 ? ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right) : 0);
  const y = (v: number) => PAD.top + (1 - Math.min(v, yMax) / yMax) * (H - PAD.top - PAD.bottom);
  const span = t1 > t0 ? Math.round((t1 - t0) / 1000) : 0;
  // A line needs two samples in time, whatever the number of series.
  const drawable = series.some((s) => s.points.length >= 2);
  return (
    <figure className="card chart" aria-label={title}>
      <figcaption>
        <strong>
          {title}
          {unit ? <span className="muted small"> ({unit.trim()})</span> : null}
        </strong>
        <span className="legend">
          {series.map((s) => {
            const last = s.points[s.points.length - 1];
            return (
              <span key={s.name}>
                <i style={{ background: s.color }} /> {s.name}
                {last ? <b> {tick(last[1])}{unit}</b> : null}
              </span>
            );
          })}
        </span>
      </figcaption>
      {!drawable ? (
        <p className="muted small chart-empty">Collecting samples…</p>
      ) : (
        <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`${title} over the last ${span} s`}>
          {[0, 0.25, 0.5, 0.75, 1].map((f) => (
            <g key={f}>
              <line x1={PAD.left} x2={W - PAD.right} y1={y(yMax * f)} y2={y(yMax * f)} className="grid" />
              <text x={PAD.left - 6} y={y(yMax * f) + 4} textAnchor="end" className="axis">
                {tick(yMax * f)}
              </text>
            </g>
          ))}
          <text x={PAD.left} y={H - 4} className="axis">
            −{span} s
          </text>
          <text x={W - PAD.right} y={H - 4} textAnchor="end" className="axis">
            now
          </text>
          {series.map((s) =>
            s.points.length ? (
              <polyline
                key={s.name}
                fill="none"
                stroke={s.color}
                strokeWidth={2}
                strokeLinejoin="round"
                points={s.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ")}
              />
            ) : null,
          )}
        </svg>
      )}
    </figure>
  );
}
