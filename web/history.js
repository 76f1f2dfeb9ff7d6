// The history view: every stored event, newest first, filtered by stream and label, a page at a
// time (GET /api/events with its next_cursor). Loaded when shown and when the filters change;
// while shown, new events reload the first page, or (once older pages are loaded, so the reader's
// place is not lost) offer to.

import { api } from "./api.js";
import { Refresher, eventSummary, problemText, renderKey, thumbnail } from "./events.js";
import * as fmt from "./format.js";

const PAGE_SIZE = 20;

export class HistoryView {
  /**
   * @param {HTMLElement} root  the #history-view section of index.html
   * @param {(ev: object, opener: HTMLElement) => void} onOpen
   */
  constructor(root, onOpen) {
    this.root = root;
    this.onOpen = onOpen;
    this.els = {};
    for (const node of root.querySelectorAll("[data-role]")) this.els[node.dataset.role] = node;
    this.events = [];
    this.rows = new Map(); // event id -> {key, el}
    this.cursor = null;
    this.pages = 0;
    this.generation = 0; // a filter change makes the answers of older requests moot
    this.visible = false;
    this.streams = new Set();
    this.labels = new Set();
    this.refresher = new Refresher(() => this.reload(), { gapMs: 2000 });

    const { form, stream, label, more, retry, newer } = this.els;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.reload();
    });
    stream.addEventListener("change", () => this.reload());
    label.addEventListener("change", () => this.reload());
    label.addEventListener("input", () => {
      if (label.value === "") this.reload(); // cleared with the search box's × or by hand
    });
    more.addEventListener("click", () => this.loadMore());
    retry.addEventListener("click", () => (this.pages > 0 ? this.loadMore() : this.reload()));
    newer.addEventListener("click", () => this.reload());
  }

  show() {
    this.visible = true;
    this.reload();
  }

  hide() {
    this.visible = false;
  }

  /** Streams the filter offers: the live ones plus any seen in stored events. */
  addStreams(ids) {
    let added = false;
    for (const id of ids) {
      if (id === undefined || id === null || this.streams.has(String(id))) continue;
      this.streams.add(String(id));
      added = true;
    }
    if (!added) return;
    const select = this.els.stream;
    const chosen = select.value;
    const options = [...this.streams].sort().map((id) => {
      const option = document.createElement("option");
      option.value = id;
      option.textContent = id;
      return option;
    });
    select.replaceChildren(select.options[0], ...options); // the first one is "All streams"
    select.value = chosen;
  }

  /** Labels the label box suggests: the model's, plus any seen in stored events. */
  addLabels(labels) {
    const fresh = [];
    for (const label of labels) {
      const text = String(label ?? "");
      if (!text || this.labels.has(text)) continue;
      this.labels.add(text);
      const option = document.createElement("option");
      option.value = text;
      fresh.push(option);
    }
    this.els.labels.append(...fresh);
  }

  /** An `event` or `clip` websocket message. */
  noteMessage(msg) {
    if (msg.stream !== undefined) this.addStreams([msg.stream]);
    this.refresh();
  }

  /** Stored events may have changed (a message, a reconnect). */
  refresh() {
    if (!this.visible) return; // show() loads afresh anyway
    if (this.pages <= 1) this.refresher.request();
    else this.els.newer.hidden = false;
  }

  filters() {
    return { stream: this.els.stream.value, label: this.els.label.value.trim() };
  }

  reload() {
    this.generation += 1;
    this.cursor = null;
    this.pages = 0;
    this.els.newer.hidden = true;
    return this.fetchPage(true);
  }

  loadMore() {
    if (!this.cursor) return Promise.resolve();
    return this.fetchPage(false);
  }

  async fetchPage(first) {
    const generation = this.generation;
    const { more, status } = this.els;
    more.disabled = true;
    status.textContent = "Loading…";
    this.showError("");
    let page;
    try {
      page = await api.events({ ...this.filters(), limit: PAGE_SIZE, cursor: first ? null : this.cursor });
    } catch (err) {
      if (generation !== this.generation) return;
      if (first) {
        // Rows of the previous filters would look like answers to these.
        this.events = [];
        this.cursor = null;
        this.render();
        this.els.empty.hidden = true;
      }
      status.textContent = "";
      this.showError(problemText(err));
      return;
    } finally {
      if (generation === this.generation) more.disabled = false;
    }
    if (generation !== this.generation) return;
    const events = (Array.isArray(page?.events) ? page.events : []).filter((ev) => ev && typeof ev.id === "string");
    this.events = first ? events : [...this.events, ...events.filter((ev) => !this.rows.has(ev.id))];
    this.cursor = typeof page?.next_cursor === "string" ? page.next_cursor : null;
    this.pages += 1;
    this.addStreams(events.map((ev) => ev.stream));
    this.addLabels(events.map((ev) => ev.label));
    this.render();
  }

  render() {
    const rows = new Map();
    const nodes = this.events.map((ev) => {
      const key = renderKey(ev);
      const old = this.rows.get(ev.id);
      const el = old && old.key === key ? old.el : this.row(ev);
      rows.set(ev.id, { key, el });
      return el;
    });
    this.rows = rows;
    this.els.list.replaceChildren(...nodes);
    const count = nodes.length;
    const { stream, label } = this.filters();
    this.els.empty.hidden = count > 0;
    this.els.empty.textContent = stream || label ? "No stored events match these filters." : "No stored events yet.";
    this.els.more.hidden = !this.cursor;
    this.els.status.textContent =
      count === 0 ? "" : `${count} event${count === 1 ? "" : "s"}${this.cursor ? ", newest first" : ", all shown"}`;
  }

  row(ev) {
    const li = document.createElement("li");
    li.className = "history-row";
    li.dataset.eventId = ev.id;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "history-open";
    button.setAttribute("aria-label", `${ev.has_clip ? "Play clip" : "Show event"}: ${eventSummary(ev)}`);

    const main = document.createElement("span");
    main.className = "history-main";
    const label = document.createElement("span");
    label.className = "history-label";
    label.textContent = String(ev.label ?? "");
    label.title = label.textContent;
    const stream = document.createElement("span");
    stream.className = "history-stream";
    stream.textContent = String(ev.stream ?? "");
    stream.title = stream.textContent;
    main.append(label, stream);

    const when = document.createElement("span");
    when.className = "history-when";
    const time = document.createElement("time");
    time.textContent = fmt.when(ev.start);
    if (Number.isFinite(Number(ev.start))) time.dateTime = new Date(Number(ev.start) * 1000).toISOString();
    const length = document.createElement("span");
    length.textContent =
      ev.in_progress || !Number.isFinite(Number(ev.end)) ? "running" : fmt.duration(Number(ev.end) - Number(ev.start));
    when.append(time, length);

    const score = document.createElement("span");
    score.className = "history-score";
    score.textContent = `peak ${fmt.percent(ev.peak_score)}`;

    const clip = document.createElement("span");
    clip.className = "history-clip";
    clip.dataset.clip = ev.has_clip ? "yes" : "no";
    clip.textContent = ev.has_clip
      ? `▶ ${Number.isFinite(Number(ev.clip_duration_s)) ? fmt.duration(ev.clip_duration_s) : "clip"}`
      : ev.in_progress
        ? "clip after it ends"
        : "no clip";

    button.append(thumbnail(ev), main, when, score, clip);
    button.addEventListener("click", () => this.onOpen(ev, button));
    li.append(button);
    return li;
  }

  showError(text) {
    this.els["error-text"].textContent = text;
    this.els.error.hidden = !text;
  }
}
