// "Use my camera": the browser's own camera as a stream, sent to the server
// over WebRTC (docs/protocol.md, "WebRTC: the browser's own camera").
//
// Signalling is one request, no trickle: the page gathers all of its ICE
// candidates first, then POSTs the whole offer; the answer carries the
// server's candidates and the new stream's id. From then on the camera is an
// ordinary stream: its labels and events come over the websocket like any
// other's, and app.js shows them in a StreamCard whose preview is this local
// <video> instead of the server's MJPEG.

import { api, ApiError } from "./api.js";

const CONSTRAINTS = { video: { width: 640, height: 480, frameRate: 15 }, audio: false };
const GATHER_TIMEOUT_MS = 5000;
// ICE "disconnected" can heal by itself; give it this long before giving up.
const DISCONNECT_GRACE_MS = 5000;

/** Why the camera could not start, in words a user can act on. */
function cameraProblem(err) {
  switch (err && err.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Camera permission was denied. Allow this site to use the camera (the camera icon in the address bar, or the site settings) and press \u201cUse my camera\u201d again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera was found. Connect a camera (or enable it in the system settings) and try again.";
    case "NotReadableError":
    case "AbortError":
      return "The camera could not be started. Another application may be using it; close that and try again.";
    default:
      return `The camera could not be started: ${err && err.message ? err.message : String(err)}`;
  }
}

class CameraError extends Error {
  constructor(message, code = "") {
    super(message);
    this.name = "CameraError";
    this.code = code;
  }
}

/** Resolve when ICE gathering is complete, or after `ms` (the offer then carries what was gathered). */
function gatheringComplete(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (complete) => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve(complete);
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done(true);
    };
    const timer = setTimeout(() => done(false), ms);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

export class CameraSource {
  /**
   * Renders its button and message into `slot` (#local-sources).
   * @param {HTMLElement} slot
   * @param {{onStart: (id: string, video: HTMLVideoElement) => void, onStop: (id: string) => void}} hooks
   *   onStart: the server accepted the camera as stream `id`; show `video` as its preview.
   *   onStop: the camera of stream `id` was stopped here (the server removes the stream).
   */
  constructor(slot, { onStart, onStop }) {
    this.onStart = onStart;
    this.onStop = onStop;
    this.pc = null;
    this.media = null;
    this.video = null;
    this.streamId = null;
    this.busy = false;
    this.disconnectTimer = null;
    this.attempt = 0; // tells a stale start (stopped meanwhile) apart from the current one

    this.button = document.createElement("button");
    this.button.type = "button";
    this.button.id = "camera-toggle";
    this.button.className = "button camera-button";
    this.button.addEventListener("click", () => (this.active || this.busy ? this.stop() : this.start()));

    this.note = document.createElement("span");
    this.note.className = "camera-note";
    this.note.id = "camera-note";
    this.note.setAttribute("aria-live", "polite");

    this.error = document.createElement("p");
    this.error.className = "form-error camera-error";
    this.error.id = "camera-error";
    this.error.setAttribute("role", "alert");
    this.error.hidden = true;
    this.errorMessage = document.createElement("span");
    this.errorMessage.className = "form-error-message";
    this.errorMessage.id = "camera-error-message";
    this.errorCode = document.createElement("code");
    this.errorCode.className = "form-error-code";
    this.errorCode.id = "camera-error-code";
    this.error.append(this.errorMessage, this.errorCode);

    const row = document.createElement("div");
    row.className = "camera-row";
    row.append(this.button, this.note);
    slot.append(row, this.error);
    slot.hidden = false;
    this.render();

    // Closing or leaving the page hangs up at once, so the server frees the stream
    // now rather than when its no-video watchdog fires.
    window.addEventListener("pagehide", () => this.stop({ quiet: true }));
  }

  get active() {
    return this.pc !== null && this.streamId !== null;
  }

  /** True when `id` is this page's own camera stream. */
  owns(id) {
    return this.streamId !== null && String(id) === this.streamId;
  }

  render(note = "") {
    this.button.textContent = this.busy ? "Cancel" : this.active ? "Stop camera" : "Use my camera";
    this.button.classList.toggle("primary", !this.active && !this.busy);
    this.button.setAttribute("aria-pressed", String(this.active));
    this.note.textContent = note;
    this.note.hidden = !note;
  }

  showError(message, code = "") {
    this.errorMessage.textContent = message || "";
    this.errorCode.textContent = code || "";
    this.errorCode.hidden = !code;
    this.error.hidden = !message;
  }

  async start() {
    if (this.active || this.busy) return;
    this.showError("");
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      this.showError(
        "This page cannot use a camera: browsers only allow cameras on https:// pages or on localhost. " +
          "Open the page at https://\u2026 or at http://localhost:PORT on this machine.",
        "insecure_context",
      );
      return;
    }
    if (typeof RTCPeerConnection === "undefined") {
      this.showError("This browser does not support WebRTC, which sending the camera needs.", "no_webrtc");
      return;
    }
    const attempt = ++this.attempt;
    this.busy = true;
    this.render("asking for the camera\u2026");
    try {
      // The camera first: a user who says no never opens a peer connection.
      let media;
      try {
        media = await navigator.mediaDevices.getUserMedia(CONSTRAINTS);
      } catch (err) {
        throw new CameraError(cameraProblem(err), err && err.name ? err.name : "");
      }
      if (attempt !== this.attempt) {
        for (const track of media.getTracks()) track.stop(); // cancelled while the prompt was up
        return;
      }
      this.media = media;
      this.render("connecting to the server\u2026");
      const config = await api.webrtcConfig();
      const iceServers = Array.isArray(config && config.ice_servers) ? config.ice_servers : [];
      if (attempt !== this.attempt) return;
      const pc = new RTCPeerConnection({ iceServers });
      this.pc = pc;
      for (const track of this.media.getVideoTracks()) pc.addTrack(track, this.media);
      await pc.setLocalDescription(await pc.createOffer());
      await gatheringComplete(pc, GATHER_TIMEOUT_MS);
      if (attempt !== this.attempt) return;
      const answer = await api.webrtcOffer({ sdp: pc.localDescription.sdp, type: "offer" });
      if (attempt !== this.attempt) return; // the server drops the stream when no video comes
      await pc.setRemoteDescription({ type: "answer", sdp: String(answer.sdp) });
      this.streamId = String(answer.stream);
      pc.addEventListener("connectionstatechange", () => this.onConnectionState(pc));
      this.video = this.makeVideo();
      this.busy = false;
      this.render();
      this.onStart(this.streamId, this.video);
    } catch (err) {
      if (attempt !== this.attempt) return;
      this.busy = false;
      this.hangUp();
      this.render();
      if (err instanceof ApiError) this.showError(`The server refused the camera: ${err.message}`, err.code);
      else if (err instanceof CameraError) this.showError(err.message, err.code);
      else this.showError(`Could not connect the camera: ${err && err.message ? err.message : String(err)}`, "");
    }
  }

  makeVideo() {
    const video = document.createElement("video");
    video.className = "local-video";
    video.muted = true; // muted + playsinline: allowed to autoplay, also on phones
    video.playsInline = true;
    video.autoplay = true;
    video.setAttribute("muted", "");
    video.setAttribute("playsinline", "");
    video.setAttribute("autoplay", "");
    video.srcObject = this.media;
    video.play().catch(() => {}); // autoplay does it; this only covers browsers that wait
    return video;
  }

  onConnectionState(pc) {
    if (pc !== this.pc) return;
    clearTimeout(this.disconnectTimer);
    if (pc.connectionState === "failed") {
      this.stop({ quiet: true });
      this.showError(
        "The camera's connection to the server failed: no network path was found between this browser and the server " +
          "(a STUN/TURN server in server.ice_servers may be needed).",
        "ice_failed",
      );
    } else if (pc.connectionState === "disconnected") {
      this.disconnectTimer = setTimeout(() => {
        if (pc !== this.pc || pc.connectionState !== "disconnected") return;
        this.stop({ quiet: true });
        this.showError("The camera's connection to the server was lost.", "disconnected");
      }, DISCONNECT_GRACE_MS);
    } else if (pc.connectionState === "closed") {
      this.stop({ quiet: true });
    }
  }

  /** The server removed our stream (DELETE, or it ended it): hang up without a message. */
  forget(id) {
    if (this.owns(id)) this.stop({ quiet: true });
  }

  /** Close the peer connection and stop the camera; the server then removes the stream. */
  stop({ quiet = false } = {}) {
    this.attempt += 1; // cancels a start in progress
    const id = this.streamId;
    this.busy = false;
    this.hangUp();
    this.render();
    if (!quiet) this.showError("");
    if (id !== null) this.onStop(id);
  }

  hangUp() {
    clearTimeout(this.disconnectTimer);
    if (this.pc) {
      try {
        this.pc.close();
      } catch {
        // already closed
      }
    }
    if (this.media) for (const track of this.media.getTracks()) track.stop();
    if (this.video) this.video.srcObject = null;
    this.pc = null;
    this.media = null;
    this.video = null;
    this.streamId = null;
  }
}
