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
  websocket() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return withToken(`${scheme}//${window.location.host}/ws`);
  },
};

async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
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
  } catch (err) {
    throw new ApiError(0, "unreachable", "Could not reach the server. Is it running?");
  }
  if (response.status === 204) return null;
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const error = payload && typeof payload === "object" ? payload.error : null;
    const code = error && typeof error.code === "string" ? error.code : `http_${response.status}`;
    const message =
      error && typeof error.message === "string" && error.message
        ? error.message
        : `The server answered ${response.status} ${response.statusText}`.trim();
    throw new ApiError(response.status, code, message);
  }
  return payload;
}

export const api = {
  model: () => request("GET", "/api/model"),
  streams: () => request("GET", "/api/streams"),
  stream: (id) => request("GET", `/api/streams/${enc(id)}`),
  addStream: (spec) => request("POST", "/api/streams", spec),
  removeStream: (id) => request("DELETE", `/api/streams/${enc(id)}`),
  webrtcConfig: () => request("GET", "/api/webrtc/config"),
  webrtcOffer: (offer) => request("POST", "/api/webrtc/offer", offer),
};
