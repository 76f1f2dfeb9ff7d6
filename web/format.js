// Small, pure formatting helpers (no DOM).

export function percent(score) {
  const value = Math.max(0, Math.min(1, Number(score) || 0)) * 100;
  return `${value.toFixed(value < 9.95 ? 1 : 0)}%`;
}

export function millis(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(Number(ms))) return "–";
  const value = Number(ms);
  if (value >= 10_000) return `${(value / 1000).toFixed(1)} s`;
  return `${Math.round(value)} ms`;
}

export function fps(value) {
  if (value === null || value === undefined || !Number.isFinite(Number(value))) return "–";
  return `${Number(value).toFixed(1)} fps`;
}

/** Unix seconds -> local wall-clock time, e.g. 14:03:07. */
export function clock(unixSeconds) {
  if (!Number.isFinite(Number(unixSeconds))) return "";
  return new Date(Number(unixSeconds) * 1000).toLocaleTimeString([], {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hour12: false,
  });
}

/** Unix seconds -> the time today, else the date and time, e.g. "14:03:07" or "3 May, 14:03:07". */
export function when(unixSeconds) {
  if (!Number.isFinite(Number(unixSeconds))) return "";
  const date = new Date(Number(unixSeconds) * 1000);
  const time = clock(unixSeconds);
  if (date.toDateString() === new Date().toDateString()) return time;
  const day = date.toLocaleDateString([], {
    day: "numeric",
    month: "short",
    year: date.getFullYear() === new Date().getFullYear() ? undefined : "numeric",
  });
  return `${day}, ${time}`;
}

export function duration(seconds) {
  const s = Math.max(0, Number(seconds) || 0);
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

export const STATES = ["connecting", "live", "reconnecting", "stopped", "failed"];

/** A state from the server, or "unknown" when it sends something new (still shown, neutral colour). */
export function knownState(state) {
  return STATES.includes(state) ? state : "unknown";
}
