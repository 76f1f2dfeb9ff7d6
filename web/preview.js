// Video previews for the stream cards.
//
// Each MJPEG preview holds one HTTP/1.1 connection open for as long as it
// plays, and browsers allow only six per host: with more previews than that,
// every fetch the page makes would queue behind them. So at most
// MAX_LIVE_PREVIEWS cards play MJPEG (visible ones first); the rest show a
// snapshot refreshed every few seconds. Cards scrolled out of view, and every
// card while the tab is hidden or the server unreachable, load nothing, and
// the server encodes nothing for them.

import { urls } from "./api.js";

const MAX_LIVE_PREVIEWS = 4;
const SNAPSHOT_EVERY_MS = 3000;
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 15_000;

/** The URL with a cache-busting parameter, so a reload opens a new request. */
function fresh(url) {
  return `${url}${url.includes("?") ? "&" : "?"}_=${Date.now()}`;
}

class Preview {
  constructor(streamId, img, note) {
    this.streamId = streamId;
    this.img = img;
    this.note = note;
    this.mode = "off"; // "mjpeg" | "snapshot" | "off"
    this.visible = true;
    this.failures = 0;
    this.retryTimer = null;
    this.snapshotTimer = null;
    this.generation = 0; // tells late load/error events of an old src apart
    img.addEventListener("load", () => {
      this.failures = 0;
      this.setNote(null);
    });
    img.addEventListener("error", () => this.onError());
  }

  setNote(text) {
    this.note.textContent = text || "";
    this.note.hidden = !text;
    this.img.classList.toggle("is-blank", Boolean(text));
  }

  setMode(mode, pausedNote = "preview paused") {
    this.pausedNote = pausedNote;
    if (mode === this.mode) return;
    this.mode = mode;
    this.load();
  }

  /** Start over (after a reconnect or a stream state change): the old connection may be dead. */
  restart() {
    this.failures = 0;
    this.load();
  }

  load() {
    clearTimeout(this.retryTimer);
    clearInterval(this.snapshotTimer);
    this.generation += 1;
    if (this.mode === "off") {
      // Dropping the src ends the MJPEG request, so the server stops encoding.
      this.img.removeAttribute("src");
      this.setNote(this.pausedNote || "preview paused");
      return;
    }
    if (this.mode === "mjpeg") {
      this.img.src = fresh(urls.preview(this.streamId));
    } else {
      const refresh = () => {
        this.img.src = fresh(urls.snapshot(this.streamId));
      };
      refresh();
      this.snapshotTimer = setInterval(refresh, SNAPSHOT_EVERY_MS);
    }
  }

  onError() {
    if (this.mode === "off" || !this.img.getAttribute("src")) return;
    this.setNote("no video yet");
    if (this.mode === "snapshot") return; // the interval tries again anyway
    // MJPEG ended or was refused (no frame yet, stream gone, server down): retry with backoff.
    this.failures += 1;
    const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (this.failures - 1));
    const generation = this.generation;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (generation === this.generation && this.mode === "mjpeg") this.load();
    }, delay);
  }

  destroy() {
    this.mode = "off";
    this.load();
  }
}

export class PreviewPool {
  constructor() {
    this.previews = new Map(); // stream id -> Preview
    this.enabled = false; // false while the server is unreachable
    this.held = false; // true while the clip player is open
    this.observer = new IntersectionObserver((entries) => this.onIntersect(entries), {
      rootMargin: "200px 0px",
    });
    document.addEventListener("visibilitychange", () => this.rebalance());
  }

  add(streamId, container, img, note) {
    const preview = new Preview(streamId, img, note);
    preview.container = container;
    this.previews.set(streamId, preview);
    this.observer.observe(container);
    this.rebalance();
    return preview;
  }

  remove(streamId) {
    const preview = this.previews.get(streamId);
    if (!preview) return;
    this.observer.unobserve(preview.container);
    preview.destroy();
    this.previews.delete(streamId);
    this.rebalance();
  }

  setEnabled(enabled) {
    this.enabled = enabled;
    this.rebalance();
  }

  /** Pause every preview while `held` (the clip player is open and needs the connections). */
  setHeld(held) {
    this.held = held;
    this.rebalance();
  }

  /** Reload every playing preview (the server restarted, its MJPEG connections are gone). */
  restartAll() {
    for (const preview of this.previews.values()) if (preview.mode !== "off") preview.restart();
  }

  restart(streamId) {
    const preview = this.previews.get(streamId);
    if (preview && preview.mode !== "off") preview.restart();
  }

  onIntersect(entries) {
    for (const entry of entries) {
      for (const preview of this.previews.values()) {
        if (preview.container === entry.target) preview.visible = entry.isIntersecting;
      }
    }
    this.rebalance();
  }

  rebalance() {
    const active = this.enabled && document.visibilityState !== "hidden";
    let live = 0;
    // Map order is insertion order, which is the order of the cards on the page.
    for (const preview of this.previews.values()) {
      if (!this.enabled) {
        preview.setMode("off", "server unreachable");
      } else if (this.held) {
        preview.setMode("off", "paused while a clip plays");
      } else if (!active || !preview.visible) {
        preview.setMode("off");
      } else if (live < MAX_LIVE_PREVIEWS) {
        preview.setMode("mjpeg");
        live += 1;
      } else {
        preview.setMode("snapshot");
      }
    }
  }
}
