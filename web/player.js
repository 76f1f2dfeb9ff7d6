// The clip player: a modal <dialog> with a <video controls> on an event's clip.
//
// The native modal dialog keeps focus inside it and closes on Escape; closing hands focus back
// to whatever opened it. A <video> that fails says nothing about why, so the player asks the
// server (mediaProblem) and puts its answer in words. While it is open the card previews pause
// (onHold): each MJPEG preview holds one of the browser's six connections to the server, and the
// clip's Range requests need them.

import { mediaProblem, urls } from "./api.js";
import * as fmt from "./format.js";

const MEDIA_ERRORS = { 1: "loading was aborted", 2: "a network error", 3: "it could not be decoded", 4: "its format is not supported" };

/** A clip of `ev` that cannot be loaded, in words, from the server's answer (`null`: the server served it). */
function clipProblem(ev, err, mediaError) {
  if (!err) {
    const why = MEDIA_ERRORS[mediaError?.code] || "an unknown error";
    return `This browser could not play the clip (${why}). Try the download link.`;
  }
  if (err.status === 0) return "Could not reach the server to load the clip.";
  if (err.code === "no_clip") {
    return ev.has_clip
      ? "This event's clip is missing on the server: its file was removed."
      : "This event's clip is not written yet: it is saved a few seconds after the event ends.";
  }
  if (err.code === "unknown_event") return "This event is no longer stored (deleted, or removed by retention).";
  if (err.status === 503) return "The event store is not answering right now; try again in a moment.";
  return `The clip could not be loaded: ${err.message}`;
}

export class ClipPlayer {
  /**
   * @param {HTMLDialogElement} dialog  the #player element of index.html
   * @param {{onHold: (held: boolean) => void}} options
   */
  constructor(dialog, { onHold }) {
    this.dialog = dialog;
    this.onHold = onHold;
    this.parts = {};
    for (const node of dialog.querySelectorAll("[data-role]")) this.parts[node.dataset.role] = node;
    this.event = null;
    this.opener = null;
    this.generation = 0; // tells a late error of the previous clip apart
    const video = this.parts.video;
    video.addEventListener("error", () => this.onVideoError());
    video.addEventListener("loadeddata", () => this.showMessage(""));
    this.parts.close.addEventListener("click", () => this.close());
    dialog.addEventListener("close", () => this.onClosed());
    // A click on the backdrop lands on the <dialog> itself (its content fills it edge to edge).
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) this.close();
    });
  }

  get isOpen() {
    return this.dialog.open;
  }

  /** Show `ev` (a stored event from GET /api/events); `opener` gets focus back on close. */
  open(ev, opener) {
    this.event = ev;
    this.opener = opener || document.activeElement;
    this.parts.title.textContent = String(ev.label ?? "");
    this.parts.meta.textContent = this.metaText(ev);
    if (!this.dialog.open) {
      this.onHold(true);
      this.dialog.showModal();
    }
    this.parts.close.focus();
    this.load();
  }

  metaText(ev) {
    const parts = [String(ev.stream ?? ""), fmt.when(ev.start)];
    if (ev.in_progress) parts.push("running");
    else if (Number.isFinite(Number(ev.end)) && Number.isFinite(Number(ev.start))) parts.push(fmt.duration(ev.end - ev.start));
    parts.push(`peak ${fmt.percent(ev.peak_score)}`);
    return parts.filter(Boolean).join(" · ");
  }

  load() {
    const ev = this.event;
    const video = this.parts.video;
    this.generation += 1;
    // The snapshot stands in while the clip loads, and instead of it when there is none.
    if (ev.has_snapshot) video.poster = urls.eventSnapshot(ev.id, ev.peak_ts);
    else video.removeAttribute("poster");
    const download = this.parts.download;
    if (!ev.has_clip) {
      this.unload();
      download.hidden = true;
      this.showMessage(
        ev.in_progress
          ? "No clip yet: it is saved a few seconds after the event ends, and plays here then."
          : "This event has no clip (recording was off, or it could not be saved).",
      );
      return;
    }
    this.showMessage("");
    const src = urls.eventClip(ev.id);
    download.href = src;
    download.hidden = false;
    download.setAttribute("download", `${String(ev.id).replace(/[^A-Za-z0-9_.-]/g, "_")}.mp4`);
    video.src = src;
    // Opened by a click, so the browser lets it play; if it still refuses, the controls are there.
    video.play().catch(() => {});
  }

  /** A `clip` message: the open event's clip is ready now. */
  clipReady(msg) {
    if (!this.isOpen || !this.event || this.event.id !== msg.event_id || this.event.has_clip) return;
    this.open({ ...this.event, has_clip: true, clip_duration_s: msg.duration_s }, this.opener);
  }

  async onVideoError() {
    const ev = this.event;
    const video = this.parts.video;
    if (!ev || !video.getAttribute("src")) return;
    const generation = this.generation;
    const mediaError = video.error;
    const problem = await mediaProblem(urls.eventClip(ev.id));
    if (generation !== this.generation || !this.isOpen) return;
    this.showMessage(clipProblem(ev, problem, mediaError));
    if (problem) this.parts.download.hidden = true;
    this.unload(); // the poster (its snapshot) shows instead of a spinner that would never stop
  }

  showMessage(text) {
    this.parts.message.textContent = text;
    this.parts.message.hidden = !text;
  }

  unload() {
    const video = this.parts.video;
    video.pause();
    // Dropping the source ends its requests (a removed src attribute alone keeps the old one loaded).
    video.removeAttribute("src");
    video.load();
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  onClosed() {
    // The close event is a task of its own: a click may have opened the next event before it ran.
    if (this.dialog.open) return;
    this.generation += 1;
    this.unload();
    this.lastId = this.event?.id;
    this.event = null;
    this.onHold(false);
    const opener = this.opener;
    this.opener = null;
    if (opener && opener.isConnected) {
      opener.focus();
      return;
    }
    // Its list was re-rendered meanwhile: the same event's new button, where one is shown.
    const id = this.lastId;
    const again = [...document.querySelectorAll("[data-event-id] button")].find(
      (el) => el.closest("[data-event-id]").dataset.eventId === id && el.offsetParent !== null,
    );
    again?.focus();
  }
}
