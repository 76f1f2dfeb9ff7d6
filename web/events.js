// Stored events (GET /api/events): the thumbnail every listed event shows, the refresh rule the
// card strips and the history view share, and a card's strip of recent events.
//
// Nothing polls: a strip reloads when an `event` or `clip` message for its stream arrives (the
// store then knows has_snapshot/has_clip), after a reconnect, and when it is made.

import { api, ApiError, urls } from "./api.js";
import * as fmt from "./format.js";

const RECENT_PER_CARD = 8;
// Thumbnails are scaled by the server: a strip of 4K snapshots would be tens of megabytes.
export const THUMB_WIDTH = 320;

/**
 * Runs `task` soon after `request()`: one run in flight at a time, runs at least `gapMs` apart, and
 * any number of requests during a run or a wait become one more run. A burst of messages (updates
 * arrive every stride while an event runs) costs one request, not one each.
 */
export class Refresher {
  constructor(task, { delayMs = 250, gapMs = 1500 } = {}) {
    this.task = task;
    this.delayMs = delayMs;
    this.gapMs = gapMs;
    this.timer = null;
    this.running = false;
    this.again = false;
    this.lastAt = -Infinity;
  }

  request() {
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) return;
    const wait = Math.max(this.delayMs, this.lastAt + this.gapMs - performance.now());
    this.timer = setTimeout(() => this.run(), wait);
  }

  /** Run as soon as the one in flight (if any) is done: the user asked. */
  now() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.running) this.again = true;
    else this.run();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
    this.again = false;
    this.task = async () => {};
  }

  async run() {
    this.timer = null;
    this.running = true;
    this.lastAt = performance.now();
    try {
      await this.task();
    } catch (err) {
      console.warn("refresh failed", err);
    } finally {
      this.running = false;
      if (this.again) {
        this.again = false;
        this.request();
      }
    }
  }
}

/** A failed events request in words (the strip and the history view show these). */
export function problemText(err) {
  if (!(err instanceof ApiError)) return `Something went wrong: ${err}`;
  if (err.status === 0) return "Could not reach the server.";
  if (err.code === "not_found") return "This server keeps no event history.";
  if (err.status === 503) return `The event store is not answering right now; try again in a moment. (${err.message})`;
  return err.message;
}

/** What an event is, in one line for a screen reader or a tooltip: "walking · door · 14:03:07 · peak 83%". */
export function eventSummary(ev) {
  return [String(ev.label ?? ""), String(ev.stream ?? ""), fmt.clock(ev.start), `peak ${fmt.percent(ev.peak_score)}`]
    .filter(Boolean)
    .join(" · ");
}

/** The snapshot (lazy-loaded) or a placeholder, with a play mark when the clip is ready and a dot while running. */
export function thumbnail(ev) {
  const box = document.createElement("span");
  box.className = "thumb";
  const missing = () => {
    box.classList.add("is-missing");
    const note = document.createElement("span");
    note.className = "thumb-note";
    note.textContent = ev.in_progress ? "no snapshot yet" : "no snapshot";
    box.prepend(note);
  };
  if (ev.has_snapshot) {
    const img = document.createElement("img");
    img.alt = ""; // the button around it says what it is
    img.loading = "lazy";
    img.decoding = "async";
    img.src = urls.eventSnapshot(ev.id, ev.peak_ts, THUMB_WIDTH);
    img.addEventListener(
      "error",
      () => {
        img.remove();
        missing();
      },
      { once: true },
    );
    box.append(img);
  } else {
    missing();
  }
  if (ev.has_clip) {
    const play = document.createElement("span");
    play.className = "thumb-play";
    play.setAttribute("aria-hidden", "true");
    box.append(play);
  }
  if (ev.in_progress) {
    const live = document.createElement("span");
    live.className = "thumb-live";
    live.textContent = "live";
    box.append(live);
  }
  return box;
}

/** What changes a rendered event: a tile is rebuilt only when one of these did (no image reloads otherwise). */
export function renderKey(ev) {
  return [ev.label, ev.start, ev.end, ev.peak_score, ev.peak_ts, ev.has_clip, ev.has_snapshot].join("|");
}

/** A card's recent stored events: newest first, a tile each; clicking one opens it in the player. */
export class RecentEvents {
  /**
   * @param {string} streamId
   * @param {{list: HTMLElement, note: HTMLElement}} parts
   * @param {(ev: object, opener: HTMLElement) => void} onOpen
   */
  constructor(streamId, { list, note }, onOpen) {
    this.streamId = streamId;
    this.list = list;
    this.note = note;
    this.onOpen = onOpen;
    this.tiles = new Map(); // event id -> {key, el}
    this.refresher = new Refresher(() => this.load());
  }

  refresh() {
    this.refresher.request();
  }

  stop() {
    this.refresher.stop();
  }

  async load() {
    let page;
    try {
      page = await api.events({ stream: this.streamId, limit: RECENT_PER_CARD });
    } catch (err) {
      // Unreachable: the connection banner says so already, and the reconnect refreshes.
      if (!(err instanceof ApiError && err.status === 0)) this.setNote(problemText(err), true);
      return;
    }
    this.render(Array.isArray(page?.events) ? page.events : []);
  }

  render(events) {
    const tiles = new Map();
    const nodes = [];
    for (const ev of events) {
      if (!ev || typeof ev.id !== "string") continue;
      const key = renderKey(ev);
      const old = this.tiles.get(ev.id);
      const el = old && old.key === key ? old.el : this.tile(ev);
      tiles.set(ev.id, { key, el });
      nodes.push(el);
    }
    this.tiles = tiles;
    this.list.replaceChildren(...nodes);
    this.setNote(nodes.length ? "" : "No stored events yet.", false);
  }

  tile(ev) {
    const li = document.createElement("li");
    li.className = "recent-item";
    li.dataset.eventId = ev.id;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "recent-open";
    const what = ev.has_clip ? "Play clip" : "Show event";
    button.setAttribute("aria-label", `${what}: ${eventSummary(ev)}`);
    button.title = eventSummary(ev);
    const caption = document.createElement("span");
    caption.className = "recent-caption";
    const label = document.createElement("span");
    label.className = "recent-label";
    label.textContent = String(ev.label ?? "");
    const meta = document.createElement("span");
    meta.className = "recent-meta";
    meta.textContent = `${fmt.clock(ev.start)} · ${fmt.percent(ev.peak_score)}`;
    caption.append(label, meta);
    button.append(thumbnail(ev), caption);
    button.addEventListener("click", () => this.onOpen(ev, button));
    li.append(button);
    return li;
  }

  setNote(text, isError) {
    this.note.textContent = text;
    this.note.hidden = !text;
    this.note.classList.toggle("is-error", Boolean(isError));
  }
}
