// The /chat WebSocket in MessagePack binary frames (docs/protocol.md §4), with reconnect and backoff.
//
// Events: "frame" (detail: a decoded server frame), "state" (detail: {state, text, delay?}),
// "refused" (detail: {reason, auth}) when the server closes with 1008.
// The server's heartbeat `ping` is answered with `pong` here; callers never see it.

import { decode, encode } from "../vendor/msgpack/index.mjs";

const MAX_DELAY_MS = 15000;
const BASE_DELAY_MS = 500;

function socketUrl(token) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = token ? `?api_key=${encodeURIComponent(token)}` : "";
  return `${scheme}://${location.host}/chat${query}`;
}

export class ChatSocket extends EventTarget {
  /** `getToken()` returns the current token ("" when none). */
  constructor(getToken) {
    super();
    this.getToken = getToken;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.countdown = null;
    this.halted = false; // refused: wait for reconnectNow()
    window.addEventListener("online", () => this.reconnectNow());
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    this.clearTimers();
    this.halted = false;
    this.emitState("connecting", "Connecting…");
    const ws = new WebSocket(socketUrl(this.getToken()));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.addEventListener("open", () => {
      if (this.ws !== ws) return;
      this.attempt = 0;
      this.emitState("open", "Connected");
    });
    ws.addEventListener("message", (event) => this.onMessage(event));
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.onClose(event);
    });
  }

  /** Drop any pending retry and connect at once (after a new token, or back online). */
  reconnectNow() {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) {
      const old = this.ws;
      this.ws = null;
      old.close(1000, "reconnecting");
    }
    this.connect();
  }

  /** Send one frame as MessagePack; false when the socket is not open. */
  send(frame) {
    if (!this.isOpen) return false;
    this.ws.send(encode(frame));
    return true;
  }

  onMessage(event) {
    let frame;
    try {
      frame = typeof event.data === "string" ? JSON.parse(event.data) : decode(new Uint8Array(event.data));
    } catch (error) {
      this.dispatchEvent(
        new CustomEvent("frame", { detail: { type: "error", message: `Unreadable frame from the server: ${error.message}` } }),
      );
      return;
    }
    if (!frame || typeof frame !== "object") return;
    if (frame.type === "ping") {
      this.send({ type: "pong", ts: frame.ts });
      return;
    }
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
  }

  onClose(event) {
    if (event.code === 1008) {
      const reason = event.reason || "the server refused the connection";
      const auth = /token|auth/i.test(reason);
      this.halted = true;
      this.emitState("refused", auth ? "Needs a token" : "Refused");
      this.dispatchEvent(new CustomEvent("refused", { detail: { reason, auth } }));
      return;
    }
    this.scheduleRetry(event.code === 1013 ? "Authentication service unavailable" : "Connection lost");
  }

  scheduleRetry(why) {
    const delay = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** this.attempt) * (0.8 + Math.random() * 0.4);
    this.attempt += 1;
    const until = Date.now() + delay;
    const tick = () => {
      const seconds = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      this.emitState("closed", `${why}; retrying in ${seconds} s`, delay);
    };
    tick();
    this.countdown = setInterval(tick, 1000);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  clearTimers() {
    clearTimeout(this.timer);
    clearInterval(this.countdown);
    this.timer = null;
    this.countdown = null;
  }

  emitState(state, text, delay) {
    this.dispatchEvent(new CustomEvent("state", { detail: { state, text, delay } }));
  }
}
