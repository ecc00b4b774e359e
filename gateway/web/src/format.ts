// Numbers for people: bytes, durations, rates, times.

export function bytes(n: number): string {
  if (!Number.isFinite(n) || n <= 0) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  const i = Math.min(units.length - 1, Math.floor(Math.log(n) / Math.log(1024)));
  const value = n / 1024 ** i;
  return `${value >= 10 || i === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[i]}`;
}

export function seconds(s: number): string {
  if (!Number.isFinite(s) || s < 0) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

/** Seconds between two RFC 3339 timestamps, or null when either is missing. */
export function between(start: string | null, end: string | null): number | null {
  if (!start || !end) return null;
  return (Date.parse(end) - Date.parse(start)) / 1000;
}

export function clock(at: string | null | number): string {
  if (at === null) return "–";
  const d = new Date(at);
  return Number.isNaN(d.getTime()) ? "–" : d.toLocaleTimeString([], { hour12: false });
}

export function percent(p: number): string {
  return `${Math.round(p)}%`;
}

export function rate(n: number, unit: string): string {
  return `${n >= 100 ? n.toFixed(0) : n.toFixed(1)} ${unit}`;
}

export function label(name: string): string {
  return name.replace(/_/g, " ");
}
