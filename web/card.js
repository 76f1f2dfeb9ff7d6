// One stream's card: preview, state badge, figures, live top-k bars, its
// recent stored events (thumbnails, events.js) and the event timeline.
// Everything the server sends is untrusted text: it goes in with textContent
// and attributes, never as HTML.

import { RecentEvents } from "./events.js";
import * as fmt from "./format.js";

const MAX_EVENTS = 40;

export class StreamCard {
  /**
   * @param {object} stream  a Stream object from the REST API or hello
   * @param {{topK: number, onRemove: (card: StreamCard) => void, onOpenEvent: (ev: object, opener: HTMLElement) => void}} options
   *   onOpenEvent: a stored event's tile was clicked (the page opens it in the player)
   */
  constructor(stream, { topK, onRemove, onOpenEvent }) {
    const template = document.getElementById("card-template");
    this.el = template.content.firstElementChild.cloneNode(true);
    this.id = String(stream.id);
    this.el.dataset.stream = this.id;
    this.parts = {};
    for (const node of this.el.querySelectorAll("[data-role]")) this.parts[node.dataset.role] = node;

    const title = this.el.querySelector(".card-id");
    title.textContent = this.id;
    title.title = this.id;
    this.parts.remove.setAttribute("aria-label", `Remove stream ${this.id}`);
    this.parts.remove.addEventListener("click", () => onRemove(this));
    this.parts.img.alt = `Live preview of ${this.id}`;
    this.recent = new RecentEvents(this.id, { list: this.parts["recent-list"], note: this.parts["recent-note"] }, onOpenEvent);
    this.parts["recent-list"].setAttribute("aria-label", `Recent events of ${this.id}`);

    this.rows = [];
    this.ensureRows(Math.max(1, topK || 5));
    this.seenEvents = new Set();
    this.lastLabelsAt = 0;
    this.update(stream);
    for (const event of stream.open_events || []) this.addEvent(event);
  }

  /** Apply a full Stream object (REST or hello). */
  update(stream) {
    const url = stream.url === undefined || stream.url === null ? "" : String(stream.url);
    this.parts.url.textContent = url;
    this.parts.url.title = url;
    this.setState(stream.state, stream.reason);
    this.setRecording(stream.recording);
    this.setFigures(stream.figures);
    if (Array.isArray(stream.top_k) && stream.top_k.length) this.setTopK(stream.top_k);
  }

  setState(state, reason) {
    const known = fmt.knownState(state);
    this.state = known;
    this.el.dataset.state = known;
    this.parts.badge.dataset.state = known;
    this.parts.badge.textContent = state ? String(state) : "unknown";
    const text = reason ? String(reason) : "";
    this.parts.reason.textContent = text;
    this.parts.reason.hidden = !text;
  }

  /** Clips and snapshots: only a pause (disk full or not writable) is worth a line on the card. */
  setRecording(recording) {
    const paused = Boolean(recording && recording.state === "paused");
    this.parts.recording.textContent = paused ? String(recording.reason || "recording paused") : "";
    this.parts.recording.hidden = !paused;
  }

  setFigures(figures) {
    if (!figures || typeof figures !== "object") return;
    if (figures.label_age_s !== undefined && figures.label_age_s !== null) {
      this.parts.age.textContent = fmt.millis(figures.label_age_s * 1000);
    }
    if (figures.inference_s !== undefined && figures.inference_s !== null) {
      this.parts.infer.textContent = fmt.millis(figures.inference_s * 1000);
    }
    if (figures.ingest_fps !== undefined) this.parts.fps.textContent = fmt.fps(figures.ingest_fps);
  }

  /** A `labels` message: new top-k, label age and inference time. */
  setLabels(msg) {
    this.lastLabelsAt = performance.now();
    this.el.classList.remove("is-stale");
    this.parts.age.textContent = fmt.millis(msg.label_age_ms);
    this.parts.infer.textContent = fmt.millis(msg.inference_ms);
    if (Array.isArray(msg.top_k)) this.setTopK(msg.top_k);
  }

  /** Dim the bars when no labels have come for a while (stream stalled or stopped). */
  checkStale(maxAgeMs) {
    const stale = this.lastLabelsAt > 0 && performance.now() - this.lastLabelsAt > maxAgeMs;
    this.el.classList.toggle("is-stale", stale);
  }

  ensureRows(count) {
    const list = this.parts.topk;
    while (this.rows.length < count) {
      const li = document.createElement("li");
      li.className = "bar is-empty";
      const fill = document.createElement("span");
      fill.className = "bar-fill";
      fill.setAttribute("aria-hidden", "true");
      const label = document.createElement("span");
      label.className = "bar-label";
      label.textContent = this.rows.length === 0 ? "waiting for labels…" : "";
      const value = document.createElement("span");
      value.className = "bar-value";
      value.textContent = "";
      li.append(fill, label, value);
      list.append(li);
      this.rows.push({ li, fill, label, value });
    }
  }

  /** Rows are fixed per rank, so new results change text and widths, never the layout. */
  setTopK(topK) {
    this.ensureRows(topK.length);
    this.rows.forEach((row, i) => {
      const entry = topK[i];
      if (!entry) {
        row.li.classList.add("is-empty");
        row.label.textContent = i === 0 ? "waiting for labels…" : "";
        row.label.title = "";
        row.value.textContent = "";
        row.fill.style.transform = "scaleX(0)";
        return;
      }
      const score = Math.max(0, Math.min(1, Number(entry.score) || 0));
      const label = String(entry.label);
      row.li.classList.remove("is-empty");
      row.label.textContent = label;
      row.label.title = label;
      row.value.textContent = fmt.percent(score);
      row.li.dataset.score = score.toFixed(4);
      row.fill.style.transform = `scaleX(${score})`;
    });
  }

  /** An `event` message (or an open event from the Stream object). Newest first, bounded. */
  addEvent(ev) {
    const kind = ["start", "update", "end"].includes(ev.event) ? ev.event : "update";
    const key = `${ev.id}|${kind}|${ev.ts}`;
    if (this.seenEvents.has(key)) return;
    this.seenEvents.add(key);

    const li = document.createElement("li");
    li.className = "event";
    li.dataset.kind = kind;
    const time = document.createElement("time");
    const ts = ev.ts ?? (kind === "end" ? ev.end : ev.start);
    time.textContent = fmt.clock(ts);
    if (Number.isFinite(Number(ts))) time.dateTime = new Date(Number(ts) * 1000).toISOString();
    const tag = document.createElement("span");
    tag.className = "event-kind";
    tag.textContent = kind;
    const label = document.createElement("span");
    label.className = "event-label";
    label.textContent = String(ev.label ?? "");
    label.title = label.textContent;
    const detail = document.createElement("span");
    detail.className = "event-detail";
    if (kind === "end" && Number.isFinite(Number(ev.end)) && Number.isFinite(Number(ev.start))) {
      detail.textContent = `${fmt.duration(ev.end - ev.start)} · peak ${fmt.percent(ev.peak_score)}`;
    } else {
      detail.textContent = fmt.percent(ev.score);
    }
    li.append(time, tag, label, detail);

    const list = this.parts.events;
    list.prepend(li);
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
    if (this.seenEvents.size > MAX_EVENTS * 4) {
      // Keep the dedupe set bounded too: only keys of events still listed matter.
      this.seenEvents = new Set([...this.seenEvents].slice(-MAX_EVENTS * 2));
    }
    this.parts["events-empty"].hidden = true;
  }

  showError(message) {
    this.parts.error.textContent = message || "";
    this.parts.error.hidden = !message;
  }

  setBusy(busy) {
    this.parts.remove.disabled = busy;
    this.el.classList.toggle("is-busy", busy);
  }
}
