// Parley JS SDK: one ES module, no build step, no dependencies. Types: parley.d.ts beside it.
// The wire protocol it speaks is docs/protocol.md (messages: signaling/messages.py).
//
//   <script type="module">
//     import { connect } from "https://parley.example.org/web/parley.js";
//     const call = await connect({ url: "https://parley.example.org", token });  // token: from your backend
//     call.on("transcript", (t) => console.log(t.name, t.text, t.final));
//     call.on("agentState", (s) => console.log("agent is", s.state));
//     call.on("agentAudio", ({ stream }) => { audioElement.srcObject = stream; });
//     call.mute(); call.unmute(); call.micLevel(); call.hangUp();
//   </script>

/** Redirects a join follows in a cluster (each sends the client to the node that holds the room). */
const MAX_REDIRECTS = 3;

/**
 * Server message types and the SDK event each one is emitted as (the payload is the message).
 * @type {Readonly<Record<string, string>>}
 */
export const SERVER_EVENTS = Object.freeze({
  "joined": "joined",
  "transcript": "transcript",
  "agent.state": "agentState",
  "agent.interrupted": "agentInterrupted",
  "agent.resumed": "agentResumed",
  "turn.metrics": "turnMetrics",
  "participant.joined": "participantJoined",
  "participant.left": "participantLeft",
  "error": "error",
  "pong": "pong",
});

/**
 * Error codes after which reconnecting cannot help: the call ends instead. `replaced`: the same
 * identity joined from elsewhere (another tab); rejoining would only take the call back and forth.
 * Others that end a call (`renegotiation_timeout`, `ice_failed`, `ice_timeout`) are worth a rejoin.
 */
export const FINAL_ERROR_CODES = Object.freeze([
  "room_closed", "room_not_found", "room_full", "server_full", "token_missing", "token_expired", "token_invalid",
  "token_wrong_room", "origin_not_allowed", "replaced",
]);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** An error the server (or the SDK) reported, with its stable `code`. */
export class ParleyError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = "ParleyError";
    this.code = code;
  }
}

/**
 * The dev-mode token route of the server that served this page.
 * @param {Location} [location]
 * @returns {string}
 */
export function defaultDevTokenUrl(location = window.location) {
  return `${location.protocol}//${location.host}/api/v1/dev/token`;
}

/**
 * Ask a dev-mode server (`parley serve --dev`, what `make run` starts) for a join token; rooms are
 * created on demand there. In production your backend mints tokens with the admin REST API instead.
 * `language` ("en" | "zh" | "auto") is the language of a room this creates (an existing room keeps its own).
 * @param {{url?: string, room?: string|null, name?: string|null, language?: string|null}} [options]
 * @returns {Promise<string>}
 */
export async function fetchDevToken({ url = defaultDevTokenUrl(), room = null, name = null, language = null } = {}) {
  const body = { ...(room ? { room } : {}), ...(name ? { name } : {}), ...(language ? { language } : {}) };
  const response = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || { code: `http_${response.status}`, message: "no join token" };
    throw new ParleyError(error.code, `${error.message} (give the client a token from your backend)`);
  }
  return data.token;
}

/**
 * The signaling WebSocket URL for a Parley address: `https://host` → `wss://host/ws`; a `ws(s)://…`
 * URL is kept as it is. Without an argument: the server that served this page.
 * @param {string} [url]
 * @returns {string}
 */
export function signalingUrl(url) {
  if (!url) {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}/ws`;
  }
  if (/^wss?:/i.test(url)) return url;
  const parsed = new URL(url, window.location.href);
  parsed.protocol = parsed.protocol === "https:" ? "wss:" : "ws:";
  if (parsed.pathname === "/" || parsed.pathname === "") parsed.pathname = "/ws";
  return parsed.toString();
}

/** @deprecated kept for pages written against the first SDK: use {@link signalingUrl}. */
export function defaultSignalingUrl() { return signalingUrl(); }

/**
 * Join a room and start a call: asks for the microphone, opens the signaling WebSocket, negotiates
 * WebRTC. Resolves once the offer/answer exchange is done (audio starts flowing right after).
 * @param {import("./parley").ConnectOptions} options
 * @returns {Promise<ParleyClient>}
 */
export async function connect(options) {
  const client = new ParleyClient(options);
  try {
    await client.call();
  } catch (err) {
    client.hangUp();
    throw err;
  }
  return client;
}

/**
 * One person's call in a Parley room. Events (listen with {@link ParleyClient#on} or
 * `addEventListener`, payload in `event.detail`): joined, transcript, agentState, agentInterrupted,
 * agentResumed, turnMetrics, participantJoined, participantLeft, error, agentAudio, participantAudio,
 * connectionState, muted, reconnecting, reconnected, ended.
 */
export class ParleyClient extends EventTarget {
  /** @param {import("./parley").ConnectOptions} [options] */
  constructor({ url = undefined, token = null, tokenProvider = null, devTokenUrl = null, room = null, name = null,
                language = null, iceServers = null, iceTransportPolicy = "all",
                audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
                gatherTimeoutMs = 2000, reconnect = {} } = {}) {
    super();
    Object.assign(this, { token, tokenProvider, devTokenUrl, room, name, language, audio, gatherTimeoutMs, iceTransportPolicy });
    this.url = signalingUrl(url);
    /** @type {{enabled: boolean, timeoutMs: number}} */
    this.reconnect = { enabled: true, timeoutMs: 15000, ...reconnect };
    this.extraIceServers = iceServers;
    /** m-line mid → participant id whose audio it carries, as the server last described it. */
    this.tracks = {};
    /** participant id → {participant_id, identity, name, kind, joined_at}: everyone else in the room. */
    this.participants = new Map();
    this.participantId = null;
    this.ws = null;
    this.pc = null;
    this.localStream = null;
    this.remoteStream = null;
    this.ended = false;
    this._mainMid = null;
    this._chain = Promise.resolve();  // offers and answers are applied one at a time, in arrival order
    this._pending = new Map();
    this._analyser = null;
    this._muted = false;
    this._reconnecting = false;
    this._lastError = null;
    this._joined = null;
    this._peerStreams = new Map();  // mid → {mid, participantId, stream}: others' audio now
  }

  /**
   * Listen to one SDK event; the handler gets the payload. Returns a function that unsubscribes.
   * `joined`, `agentAudio` and `participantAudio` are sticky: a handler added after they fired is
   * called at once with the current value (so `await connect()` then `on("agentAudio")` works).
   * @param {string} type
   * @param {(detail: any) => void} handler
   * @returns {() => void}
   */
  on(type, handler) {
    const listener = (event) => handler(event.detail);
    this.addEventListener(type, listener);
    // State events are sticky: subscribing after connect() resolved still gets the current value.
    const current = type === "agentAudio" ? (this.remoteStream ? [{ stream: this.remoteStream }] : [])
      : type === "participantAudio" ? [...this._peerStreams.values()]
      : type === "joined" && this._joined ? [this._joined] : [];
    for (const detail of current) queueMicrotask(() => handler(detail));
    return () => this.removeEventListener(type, listener);
  }

  _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  _send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  _expect(type, timeoutMs = 15000) { return this._expectOneOf([type], timeoutMs); }

  _failPending(msg) {
    for (const [, waiter] of this._pending) waiter(msg);
    this._pending.clear();
  }

  _onMessage(event) {
    let msg;
    try { msg = JSON.parse(event.data); } catch { return; }
    if (msg.type === "offer") { this._serial(() => this._answerServerOffer(msg)); return; }
    if (msg.type === "joined") {
      this._joined = msg;
      this._peerStreams.clear();
      this.participants.clear();
      for (const p of msg.participants || []) this.participants.set(p.participant_id, p);
    }
    if (msg.type === "participant.joined") this.participants.set(msg.participant.participant_id, msg.participant);
    if (msg.type === "participant.left") this.participants.delete(msg.participant_id);
    if (msg.type === "error") {
      this._lastError = msg.code;
      // server_shutdown (and busy) say when trying again makes sense: the rejoin waits that long.
      if (msg.retry_after_s != null) this._retryAfterMs = msg.retry_after_s * 1000;
    }
    const waiter = this._pending.get(msg.type);
    if (waiter) { this._pending.delete(msg.type); waiter(msg); }
    if (msg.type === "error") this._failPending(msg);  // a pending join/offer fails fast
    const name = SERVER_EVENTS[msg.type];
    if (name) this._emit(name, msg);
  }

  _serial(step) {
    this._chain = this._chain.then(step, step);
    return this._chain;
  }

  // Someone joined or left: the server offers the new set of audio m-lines; we answer.
  async _answerServerOffer(msg) {
    const pc = this.pc;
    if (!pc) return;
    try {
      this.tracks = msg.tracks || {};
      for (const d of this._peerStreams.values()) d.participantId = this.tracks[d.mid] || null;  // m-lines are reused
      await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      if (pc === this.pc) this._send({ type: "answer", sdp: pc.localDescription.sdp });
    } catch (err) {
      this._emit("error", { type: "error", code: "renegotiation_failed", message: String(err && err.message || err) });
    }
  }

  _onTrack(event) {
    const mid = event.transceiver && event.transceiver.mid;
    const stream = new MediaStream([event.track]);
    if (mid !== null && mid === this._mainMid) {
      this.remoteStream = stream;
      this._emit("agentAudio", { stream });
    } else {
      const detail = { mid, participantId: this.tracks[mid] || null, stream };
      this._peerStreams.set(mid, detail);
      this._emit("participantAudio", detail);
    }
  }

  async _openSocket(url = this.url) {
    const sep = url.includes("?") ? "&" : "?";
    const ws = new WebSocket(`${url}${sep}token=${encodeURIComponent(this.token)}`);
    this.ws = ws;
    ws.onmessage = (e) => { if (ws === this.ws) this._onMessage(e); };
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new ParleyError("unreachable", `cannot reach ${url}`));
      ws.onclose = () => reject(new ParleyError("unreachable", `${url} closed the connection (refused Origin?)`));
    });
    ws.onclose = (e) => { if (ws === this.ws) this._onSocketClosed(e); };
  }

  // Open the socket and join; in a cluster, follow the node's `redirect` to the one holding the room.
  // A rejoin starts again from `url` (the node that held the room may be gone).
  async _join() {
    let url = this.url;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop += 1) {
      await this._openSocket(url);
      const reply = this._expectOneOf(["joined", "redirect"]);
      this._send({ type: "join", ...(this.name ? { name: this.name } : {}) });
      const msg = await reply;
      if (msg.type === "joined") return msg;
      const old = this.ws;
      this.ws = null;  // this socket's close is expected: no reconnect
      old.close();
      url = msg.url;
    }
    throw new ParleyError("too_many_redirects", `more than ${MAX_REDIRECTS} redirects joining the room`);
  }

  _expectOneOf(types, timeoutMs = 15000) {
    return new Promise((resolve, reject) => {
      const done = (msg) => {
        clearTimeout(timer);
        for (const t of types) this._pending.delete(t);
        if (msg.type === "error") reject(new ParleyError(msg.code, msg.message));
        else if (msg.type === "closed") reject(new ParleyError("connection_lost", "the signaling connection closed"));
        else resolve(msg);
      };
      const timer = setTimeout(() => done({ type: "error", code: "timeout", message: `no ${types.join(" or ")} from the server in ${timeoutMs} ms` }), timeoutMs);
      for (const t of types) this._pending.set(t, done);
    });
  }

  // WebSocket, join, a fresh peer connection with our microphone, offer/answer.
  async _establish() {
    const joined = await this._join();
    this.participantId = joined.participant_id;
    const iceServers = [...(joined.ice_servers || []), ...(this.extraIceServers || [])];
    // "relay" sends everything through the TURN server from `joined` (what a phone behind a strict NAT ends up using).
    const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: this.iceTransportPolicy });
    this.pc = pc;
    this._chain = Promise.resolve();
    pc.onconnectionstatechange = () => { if (pc === this.pc) this._emit("connectionState", { state: pc.connectionState }); };
    pc.ontrack = (e) => { if (pc === this.pc) this._onTrack(e); };
    for (const track of this.localStream.getAudioTracks()) pc.addTrack(track, this.localStream);
    await pc.setLocalDescription(await pc.createOffer());
    this._mainMid = pc.getTransceivers()[0].mid;
    await this._gathered(pc);
    this._send({ type: "offer", sdp: pc.localDescription.sdp });
    const answer = await this._expect("answer");
    await this._serial(async () => {
      this.tracks = answer.tracks || {};
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    });
  }

  /** Ask for the microphone, join the room and start the WebRTC call. Prefer {@link connect}. */
  async call() {
    if (!this.token && this.tokenProvider) this.token = await this.tokenProvider();
    if (!this.token) {
      this.token = await fetchDevToken({
        url: this.devTokenUrl || defaultDevTokenUrl(), room: this.room, name: this.name, language: this.language,
      });
    }
    this.localStream = await navigator.mediaDevices.getUserMedia({ audio: this.audio, video: false });
    this._applyMute();
    await this._establish();
  }

  // The socket closed while we did not hang up: rejoin (the server tore the old call down), or end.
  _onSocketClosed(event) {
    this._failPending({ type: "closed" });
    if (this.ended || this._reconnecting) return;  // a rejoin attempt's socket: the loop retries
    const final = FINAL_ERROR_CODES.includes(this._lastError);
    if (!this.reconnect.enabled || final || !this.pc) {
      const code = final ? this._lastError : "connection_lost";
      this._end(code, `the signaling connection closed (code ${event.code})`);
      return;
    }
    this._reconnectLoop();
  }

  async _reconnectLoop() {
    if (this._reconnecting) return;
    this._reconnecting = true;
    this._closePeer();
    const wait = this._retryAfterMs || 0;  // the server's hint (server_shutdown): rejoin after it, not before
    this._retryAfterMs = 0;
    const deadline = Date.now() + wait + this.reconnect.timeoutMs;
    let attempt = 0, delay = 250, reason = "the server could not be reached again";
    if (wait) await sleep(wait);
    while (!this.ended && Date.now() < deadline) {
      attempt += 1;
      this._emit("reconnecting", { attempt });
      this._lastError = null;
      try {
        if (this.tokenProvider) this.token = await this.tokenProvider();
        await Promise.race([
          this._establish(),
          sleep(Math.max(1000, deadline - Date.now())).then(() => { throw new ParleyError("timeout", "rejoining took too long"); }),
        ]);
        if (this.ended) return;
        this._reconnecting = false;
        this._emit("reconnected", { attempt, participantId: this.participantId });
        return;
      } catch (err) {
        reason = err.message || String(err);
        this._closeSocket();
        this._closePeer();
        if (FINAL_ERROR_CODES.includes(err.code)) break;
        await sleep(Math.min(delay, Math.max(0, deadline - Date.now())));
        delay = Math.min(delay * 2, 4000);
      }
    }
    this._reconnecting = false;
    if (!this.ended) this._end("connection_lost", `could not rejoin: ${reason}`);
  }

  _end(code, message) {
    if (this.ended) return;
    this.ended = true;
    if (code !== "hangup") this._emit("error", { type: "error", code, message });
    this._closeSocket();
    this._closePeer();
    if (this.localStream) this.localStream.getTracks().forEach((t) => t.stop());
    this.localStream = null;
    this._analyser = null;
    this._emit("ended", { reason: code, message });
  }

  _closeSocket() {
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close();
  }

  _closePeer() {
    const pc = this.pc;
    this.pc = null;
    if (pc) pc.close();
  }

  // aiortc does not trickle; we send our offer once gathering is complete (or after a timeout).
  _gathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { pc.removeEventListener("icegatheringstatechange", check); resolve(); };
      const check = () => { if (pc.iceGatheringState === "complete") done(); };
      pc.addEventListener("icegatheringstatechange", check);
      setTimeout(done, this.gatherTimeoutMs);
    });
  }

  _applyMute() {
    if (this.localStream) for (const t of this.localStream.getAudioTracks()) t.enabled = !this._muted;
  }

  /** Stop sending the microphone (the others and the agent hear silence). */
  mute() { this._muted = true; this._applyMute(); this._emit("muted", { muted: true }); }

  /** Send the microphone again. */
  unmute() { this._muted = false; this._applyMute(); this._emit("muted", { muted: false }); }

  /** Whether the microphone is muted. @returns {boolean} */
  get muted() { return this._muted; }

  /** Microphone level in [0, 1] (RMS of the last few ms, ×4), for a meter; 0 while muted. @returns {number} */
  micLevel() {
    if (!this.localStream || this._muted) return 0;
    if (!this._analyser) {
      const ctx = new AudioContext();
      this._analyser = ctx.createAnalyser();
      this._analyser.fftSize = 512;
      ctx.createMediaStreamSource(this.localStream).connect(this._analyser);
      this._samples = new Float32Array(this._analyser.fftSize);
    }
    this._analyser.getFloatTimeDomainData(this._samples);
    let sum = 0;
    for (const s of this._samples) sum += s * s;
    return Math.min(1, Math.sqrt(sum / this._samples.length) * 4);
  }

  /**
   * Inbound audio statistics of one m-line (default: the agent's), from getStats().
   * @param {string|null} [mid]
   */
  async inboundAudioStats(mid = this._mainMid) {
    if (!this.pc) return null;
    const stats = await this.pc.getStats();
    for (const report of stats.values()) {
      if (report.type === "inbound-rtp" && report.kind === "audio" && (report.mid === undefined || report.mid === mid)) {
        return { bytesReceived: report.bytesReceived, audioLevel: report.audioLevel ?? 0,
                 totalAudioEnergy: report.totalAudioEnergy ?? 0, packetsLost: report.packetsLost ?? 0,
                 jitter: report.jitter ?? 0 };
      }
    }
    return null;
  }

  /** Candidate types ("host", "srflx", "relay") of the ICE pair in use, from getStats(). */
  async selectedCandidateTypes() {
    if (!this.pc) return null;
    const stats = await this.pc.getStats();
    let pairId = null;
    for (const r of stats.values()) if (r.type === "transport" && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
    const pair = pairId ? stats.get(pairId) : [...stats.values()].find((r) => r.type === "candidate-pair" && r.nominated && r.state === "succeeded");
    if (!pair) return null;
    return { local: stats.get(pair.localCandidateId)?.candidateType, remote: stats.get(pair.remoteCandidateId)?.candidateType };
  }

  /** Leave the call and release the microphone; emits `ended` with reason "hangup". */
  hangUp() {
    if (this.ended) return;
    this._send({ type: "leave" });
    this._end("hangup", "you hung up");
  }

  /** @deprecated the first SDK's name: use {@link ParleyClient#hangUp}. */
  hangup() { this.hangUp(); }
}
