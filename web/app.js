// The page: wires the websocket, the REST API, the stream cards and the add form.
//
// Module map:
//   api.js         REST calls, token handling, URLs
//   connection.js  websocket with reconnect/backoff
//   card.js        one stream's card (bars, badge, recent events, timeline)
//   events.js      stored events: thumbnails, a card's recent strip, refresh rule
//   history.js     the history view (#history): all stored events, filtered, paged
//   player.js      the clip player dialog
//   preview.js     MJPEG/snapshot previews, capped and paused when unseen
//   format.js      number/time formatting
//   camera.js      "Use my camera": the browser's camera sent over WebRTC; it
//                  renders its button into #local-sources, and its stream gets
//                  the same StreamCard as a server-side one, with the local
//                  <video> as the preview instead of MJPEG

import { api, ApiError, urls } from "./api.js";
import { Connection } from "./connection.js";
import { StreamCard } from "./card.js";
import { CameraSource } from "./camera.js";
import { HistoryView } from "./history.js";
import { ClipPlayer } from "./player.js";
import { PreviewPool } from "./preview.js";

const STALE_MIN_MS = 5000;

const els = {
  grid: document.getElementById("streams"),
  empty: document.getElementById("empty"),
  conn: document.getElementById("conn"),
  connText: document.getElementById("conn-text"),
  banner: document.getElementById("conn-banner"),
  bannerText: document.getElementById("conn-banner-text"),
  retry: document.getElementById("conn-retry"),
  modelInfo: document.getElementById("model-info"),
  form: document.getElementById("add-form"),
  url: document.getElementById("add-url"),
  id: document.getElementById("add-id"),
  submit: document.getElementById("add-submit"),
  formError: document.getElementById("add-error"),
  formErrorMessage: document.getElementById("add-error-message"),
  formErrorCode: document.getElementById("add-error-code"),
};

const state = {
  model: null, // GET /api/model
  cards: new Map(), // stream id -> StreamCard
  fetching: new Set(), // stream ids being fetched after a status for an unknown stream
  // The latest status of a stream that has no card yet. A POST's answer can
  // arrive after the websocket already said the new stream went live: the
  // status is the newer news and wins when the card is made.
  pendingStatus: new Map(),
  connected: false,
};

const previews = new PreviewPool();
const player = new ClipPlayer(document.getElementById("player"), { onHold: (held) => previews.setHeld(held) });
const openEvent = (ev, opener) => player.open(ev, opener);
const historyView = new HistoryView(document.getElementById("history-view"), openEvent);

// ---------------------------------------------------------------- streams

function topK() {
  return (state.model && Number(state.model.top_k)) || 5;
}

/** `fresh`: the data was fetched after every pending status arrived, so it is the newest. */
function addOrUpdate(stream, { fresh = false } = {}) {
  if (!stream || stream.id === undefined || stream.id === null) return null;
  const id = String(stream.id);
  const pending = state.pendingStatus.get(id);
  state.pendingStatus.delete(id);
  let card = state.cards.get(id);
  if (card) {
    card.update(stream);
    return card;
  }
  card = new StreamCard(stream, { topK: topK(), onRemove: confirmRemove, onOpenEvent: openEvent });
  if (pending && !fresh) card.setState(pending.state, pending.reason);
  state.cards.set(id, card);
  els.grid.append(card.el);
  card.recent.refresh();
  historyView.addStreams([id]);
  // This page's own camera shows its local <video>, attached by showLocalCamera.
  if (!camera.owns(id)) previews.add(id, card.parts.preview, card.parts.img, card.parts["preview-note"]);
  renderEmpty();
  return card;
}

function dropCard(id) {
  camera.forget(id); // the server removed our camera's stream: hang up too
  const card = state.cards.get(id);
  if (!card) return;
  previews.remove(id);
  card.recent.stop();
  card.el.remove();
  state.cards.delete(id);
  renderEmpty();
}

function renderEmpty() {
  els.empty.hidden = state.cards.size > 0 || !state.connected;
}

/** Make the cards match the server's list exactly (hello after every (re)connect). */
function syncStreams(streams) {
  state.pendingStatus.clear();
  const ids = new Set();
  for (const stream of streams || []) {
    const card = addOrUpdate(stream);
    if (card) ids.add(card.id);
  }
  for (const id of [...state.cards.keys()]) if (!ids.has(id)) dropCard(id);
  // Keep the page order the server's order.
  for (const id of ids) els.grid.append(state.cards.get(id).el);
}

async function fetchUnknown(id) {
  if (state.fetching.has(id) || state.cards.has(id)) return;
  state.fetching.add(id);
  try {
    // Applied even when the card appeared meanwhile (from a POST answer): this is newer.
    addOrUpdate(await api.stream(id), { fresh: true });
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) state.pendingStatus.delete(id); // gone already
    else console.warn("could not fetch stream", id, err);
  } finally {
    state.fetching.delete(id);
  }
}

async function confirmRemove(card) {
  if (camera.owns(card.id)) {
    camera.stop(); // hanging up ends the stream on the server
    return;
  }
  if (!window.confirm(`Remove stream "${card.id}"? Its video and labels stop.`)) return;
  card.setBusy(true);
  card.showError("");
  try {
    await api.removeStream(card.id);
    dropCard(card.id);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      dropCard(card.id); // already gone
    } else {
      card.setBusy(false);
      card.showError(`Could not remove: ${err.message}`);
    }
  }
}

// ---------------------------------------------------------------- this browser's camera

/** The server accepted our camera as stream `id`: its card shows the local video. */
function showLocalCamera(id, video) {
  // The websocket may have made the card already (its status can beat the answer).
  const card = state.cards.get(id) ?? addOrUpdate({ id, kind: "webrtc", url: "this browser's camera", state: "connecting" });
  previews.remove(id); // never MJPEG for our own camera: the local video is sharper and has no lag
  card.el.dataset.local = "camera";
  card.parts.remove.title = "Stop camera";
  card.parts.remove.setAttribute("aria-label", "Stop camera");
  card.parts.img.hidden = true;
  card.parts.preview.classList.add("is-local");
  card.parts.preview.prepend(video);
  const note = card.parts["preview-note"];
  const playing = () => {
    note.textContent = "";
    note.hidden = true;
  };
  note.textContent = "starting camera\u2026";
  note.hidden = false;
  video.addEventListener("playing", playing, { once: true });
  card.el.scrollIntoView({ block: "nearest", behavior: "smooth" });
}

/** The camera was stopped here: the card waits (dimmed) for the server to remove the stream. */
function localCameraStopped(id) {
  const card = state.cards.get(id);
  if (!card) return;
  card.setBusy(true);
  const note = card.parts["preview-note"];
  note.textContent = "camera stopped";
  note.hidden = false;
  // The server removes the stream when the peer hangs up; its "removed" status drops the card.
}

const camera = new CameraSource(document.getElementById("local-sources"), {
  onStart: showLocalCamera,
  onStop: localCameraStopped,
});

// ---------------------------------------------------------------- websocket messages

const handlers = {
  hello(msg) {
    connection.greeted();
    setConnection("open");
    syncStreams(msg.streams);
    previews.restartAll(); // a restarted server has none of our MJPEG connections
    // Events may have been stored while we were away.
    for (const card of state.cards.values()) card.recent.refresh();
    historyView.refresh();
    if (!state.model || (msg.model && msg.model !== state.model.name)) loadModel();
  },
  status(msg) {
    const id = String(msg.stream);
    if (msg.state === "stopped" && msg.reason === "removed") {
      dropCard(id);
      return;
    }
    const card = state.cards.get(id);
    if (!card) {
      state.pendingStatus.set(id, { state: msg.state, reason: msg.reason });
      fetchUnknown(id);
      return;
    }
    const before = card.state;
    card.setState(msg.state, msg.reason);
    if ("recording" in msg) card.setRecording(msg.recording);
    if (msg.state === "live" && before !== "live") previews.restart(id);
  },
  labels(msg) {
    const card = state.cards.get(String(msg.stream));
    if (card) card.setLabels(msg);
    else fetchUnknown(String(msg.stream));
  },
  event(msg) {
    const card = state.cards.get(String(msg.stream));
    if (card) {
      card.addEvent(msg);
      card.recent.refresh(); // the store has the row (and maybe a snapshot) by the time this runs
    }
    historyView.noteMessage(msg);
  },
  clip(msg) {
    state.cards.get(String(msg.stream))?.recent.refresh();
    historyView.noteMessage(msg);
    player.clipReady(msg);
  },
  error(msg) {
    console.warn("server says:", msg.code, msg.message);
  },
  pong() {},
  subscribed() {},
};

function onMessage(msg) {
  const handler = handlers[msg.type];
  if (handler) handler(msg);
}

// ---------------------------------------------------------------- connection indicator

let countdownTimer = null;

function setConnection(conn, detail = {}) {
  clearInterval(countdownTimer);
  const connected = conn === "open";
  state.connected = connected;
  els.conn.dataset.state = conn;
  document.body.classList.toggle("is-offline", conn === "reconnecting");
  previews.setEnabled(connected);
  renderEmpty();
  if (conn === "open") {
    els.connText.textContent = "connected";
    els.banner.hidden = true;
    return;
  }
  if (conn === "connecting") {
    els.connText.textContent = "connecting…";
    return;
  }
  // reconnecting
  els.connText.textContent = "reconnecting…";
  els.banner.hidden = false;
  const why = detail.reason ? ` (${detail.reason})` : "";
  const tick = () => {
    const left = Math.ceil((detail.retryAt - Date.now()) / 1000);
    els.bannerText.textContent =
      detail.retryAt && left > 0 ? `Reconnecting in ${left} s${why}…` : `Reconnecting${why}…`;
  };
  tick();
  if (detail.retryAt) countdownTimer = setInterval(tick, 500);
}

const connection = new Connection(() => urls.websocket(), {
  onMessage,
  onState(conn, detail) {
    // "open" is shown once hello arrives: the socket alone does not mean the stream list is current.
    if (conn !== "open") setConnection(conn, detail);
  },
});

els.retry.addEventListener("click", () => connection.retryNow());
window.addEventListener("online", () => connection.retryNow());

// ---------------------------------------------------------------- model header

let modelRequest = null;

/** Fetch /api/model (once at a time) and show it in the header. */
function loadModel() {
  modelRequest ??= fetchModel().finally(() => {
    modelRequest = null;
  });
  return modelRequest;
}

async function fetchModel() {
  try {
    const model = await api.model();
    state.model = model;
    const labels = Array.isArray(model.labels) ? model.labels.length : model.labels;
    const parts = [model.name, model.device, model.dtype, `${labels} labels`].filter(
      (part) => part !== undefined && part !== null && part !== "",
    );
    els.modelInfo.textContent = parts.map(String).join(" · ");
    if (Array.isArray(model.labels)) historyView.addLabels(model.labels);
    els.modelInfo.title = String(model.name ?? "");
  } catch (err) {
    els.modelInfo.textContent = `model info unavailable: ${err.message}`;
  }
}

// ---------------------------------------------------------------- add form

function showFormError(message, code) {
  els.formErrorMessage.textContent = message || "";
  els.formErrorCode.textContent = code || "";
  els.formErrorCode.hidden = !code;
  els.formError.hidden = !message;
  els.url.setAttribute("aria-invalid", message ? "true" : "false");
}

els.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const rawUrl = els.url.value.trim();
  const id = els.id.value.trim();
  if (!rawUrl) {
    showFormError("Enter a stream URL, e.g. rtsp://camera.local/stream1.", "");
    els.url.focus();
    return;
  }
  // A bare number is a local camera index (the API takes it as a number).
  const spec = { url: /^\d+$/.test(rawUrl) ? Number(rawUrl) : rawUrl };
  if (id) spec.id = id;
  els.submit.disabled = true;
  els.submit.textContent = "Adding…";
  try {
    const stream = await api.addStream(spec);
    showFormError("");
    els.form.reset();
    const card = addOrUpdate(stream);
    if (card) card.el.scrollIntoView({ block: "nearest", behavior: "smooth" });
  } catch (err) {
    showFormError(err.message, err.code);
  } finally {
    els.submit.disabled = false;
    els.submit.textContent = "Add stream";
  }
});

els.url.addEventListener("input", () => {
  if (!els.formError.hidden) showFormError("");
});

// ---------------------------------------------------------------- views (#history or the live cards)

function showView() {
  const view = window.location.hash === "#history" ? "history" : "live";
  document.getElementById("live-view").hidden = view !== "live";
  document.getElementById("history-view").hidden = view !== "history";
  for (const tab of document.querySelectorAll(".tab[data-view]")) {
    if (tab.dataset.view === view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  if (view === "history") historyView.show();
  else historyView.hide();
}

window.addEventListener("hashchange", showView);

// ---------------------------------------------------------------- timers

// Dim a card's bars when its labels stop coming; refresh figures (fps etc.)
// that only the REST API carries.
setInterval(() => {
  const stride = (state.model && Number(state.model.stride_s)) || 1;
  const maxAge = Math.max(STALE_MIN_MS, stride * 4000);
  for (const card of state.cards.values()) card.checkStale(maxAge);
}, 1000);

setInterval(async () => {
  if (!state.connected || document.visibilityState === "hidden") return;
  try {
    const { streams } = await api.streams();
    for (const stream of streams || []) {
      const card = state.cards.get(String(stream.id));
      if (card) card.setFigures(stream.figures);
    }
  } catch {
    // The websocket notices a dead server and says so; nothing to add here.
  }
}, 5000);

showView();
loadModel();
connection.start();
