// The websocket to the server: connects, reconnects with capped exponential
// backoff (plus jitter, so many tabs do not reconnect in lockstep), and
// reports its state. Message handling lives elsewhere; this only moves JSON.

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10_000;
const PING_EVERY_MS = 20_000;

export class Connection {
  /**
   * @param {() => string} urlFn  the websocket URL (called at each attempt)
   * @param {{onMessage: (msg: object) => void, onState: (state: string, detail: object) => void}} handlers
   *   states: "connecting" | "open" | "reconnecting"
   */
  constructor(urlFn, { onMessage, onState }) {
    this.urlFn = urlFn;
    this.onMessage = onMessage;
    this.onState = onState;
    this.ws = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.retryAt = 0;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  /** Skip the rest of the backoff and try again now. */
  retryNow() {
    if (this.ws || this.stopped) return;
    clearTimeout(this.retryTimer);
    this.open();
  }

  /** Tell the server what to send (see docs/api-sketch.md `subscribe`). */
  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  open() {
    this.onState(this.attempt === 0 ? "connecting" : "reconnecting", { attempt: this.attempt, retryAt: 0 });
    let ws;
    try {
      ws = new WebSocket(this.urlFn());
    } catch (err) {
      this.scheduleRetry(String(err));
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => {
      // The attempt counter resets only once the server has greeted us (see
      // `greeted`): a server that accepts and drops at once must still back off.
      this.onState("open", {});
      this.pingTimer = setInterval(() => this.send({ type: "ping" }), PING_EVERY_MS);
    });
    ws.addEventListener("message", (event) => {
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        console.warn("ignoring a websocket message that is not JSON");
        return;
      }
      if (msg && typeof msg === "object" && typeof msg.type === "string") this.onMessage(msg);
    });
    ws.addEventListener("close", (event) => {
      clearInterval(this.pingTimer);
      this.ws = null;
      if (this.stopped) return;
      const why = event.reason || (event.code === 1006 ? "connection lost" : `closed (${event.code})`);
      this.scheduleRetry(why);
    });
    // "error" is always followed by "close"; the retry is scheduled there.
  }

  greeted() {
    this.attempt = 0;
  }

  scheduleRetry(reason) {
    this.attempt += 1;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (this.attempt - 1));
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.retryAt = Date.now() + delay;
    this.onState("reconnecting", { attempt: this.attempt, retryAt: this.retryAt, reason });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.open(), delay);
  }
}
