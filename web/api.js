// REST helpers and URLs for the server API (docs/api-sketch.md).
// The page passes `?token=` from its own URL on to every request it makes:
// as a Bearer header for fetch, as a query parameter where headers cannot be
// set (the MJPEG <img> and the websocket).

const token = new URLSearchParams(window.location.search).get("token");

/** An error the server answered with (`{"error": {"code", "message"}}`) or a network failure. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status; // 0 when the server could not be reached
    this.code = code;
  }
}

function withToken(path) {
  if (!token) return path;
  const sep = path.includes("?") ? "&" : "?";
  return `${path}${sep}token=${encodeURIComponent(token)}`;
}

const enc = encodeURIComponent;

export const urls = {
  preview: (id) => withToken(`/api/streams/${enc(id)}/preview.mjpg`),
  snapshot: (id) => withToken(`/api/streams/${enc(id)}/snapshot.jpg`),
  /** An event's snapshot; `version` (its peak_ts) changes when a higher peak replaces it, so caches miss. */
  // `width` asks the server for a thumbnail (full camera resolution without it).
  eventSnapshot: (id, version, width) => {
    const query = new URLSearchParams();
    if (version !== null && version !== undefined) query.set("v", String(version));
    if (width) query.set("width", String(width));
    const text = query.toString();
    return withToken(`/api/events/${enc(id)}/snapshot.jpg${text ? `?${text}` : ""}`);
  },
  eventClip: (id) => withToken(`/api/events/${enc(id)}/clip.mp4`),
  websocket() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return withToken(`${scheme}//${window.location.host}/ws`);
  },
};

function bearer(headers) {
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

/** The ApiError of a failed response (`{"error": {"code", "message"}}`, or its status when the body is not ours). */
async function failure(response) {
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  const error = payload && typeof payload === "object" ? payload.error : null;
  const code = error && typeof error.code === "string" ? error.code : `http_${response.status}`;
  const message =
    error && typeof error.message === "string" && error.message
      ? error.message
      : `The server answered ${response.status} ${response.statusText}`.trim();
  return new ApiError(response.status, code, message);
}

async function request(method, path, body) {
  const headers = bearer({ Accept: "application/json" });
  // Required: the server refuses JSON routes without it (415), which keeps other sites' pages, whose
  // text/plain or form POSTs need no CORS preflight, away from them (docs/protocol.md).
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw unreachable();
  }
  if (response.status === 204) return null;
  if (!response.ok) throw await failure(response);
  try {
    return await response.json();
  } catch {
    return null;
  }
}

function unreachable() {
  return new ApiError(0, "unreachable", "Could not reach the server. Is it running?");
}

/**
 * Why a media URL (a clip a <video> could not load) fails: the server's ApiError, or null when it
 * serves the file (then the browser itself could not play it). A <video> never shows the answer's
 * body, so this asks again for one byte.
 */
export async function mediaProblem(url) {
  let response;
  try {
    response = await fetch(url, { headers: bearer({ Range: "bytes=0-0" }), cache: "no-store" });
  } catch {
    return unreachable();
  }
  if (response.ok) {
    response.body?.cancel();
    return null;
  }
  return failure(response);
}

/** `GET /api/events` with the given filters (empty ones left out): `{events, next_cursor}`. */
function eventsPath(query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const qs = params.toString();
  return qs ? `/api/events?${qs}` : "/api/events";
}

export const api = {
  model: () => request("GET", "/api/model"),
  streams: () => request("GET", "/api/streams"),
  stream: (id) => request("GET", `/api/streams/${enc(id)}`),
  addStream: (spec) => request("POST", "/api/streams", spec),
  removeStream: (id) => request("DELETE", `/api/streams/${enc(id)}`),
  webrtcConfig: () => request("GET", "/api/webrtc/config"),
  webrtcOffer: (offer) => request("POST", "/api/webrtc/offer", offer),
  events: (query) => request("GET", eventsPath(query)),
};
