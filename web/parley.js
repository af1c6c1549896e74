// Parley JS SDK: one ES module, no build step. Mirrors signaling/messages.py.
//
//   import { ParleyClient } from "/web/parley.js";
//   const client = new ParleyClient({ url: "ws://127.0.0.1:8080/ws", token });  // token from your backend
//   client.addEventListener("transcript", (e) => console.log(e.detail.name, e.detail.text));
//   await client.call();   // asks for the microphone, joins, negotiates WebRTC
//   client.hangup();
//
// Without a token, call() asks the server's dev mode for one (POST /api/v1/dev/token), which only
// works on a server started with --dev (as `make run` does).
//
// Events (CustomEvent, payload in .detail): "joined" ({participant_id, participants}),
// "transcript" ({speaker, participant_id, name, text, final}), "agent.state" (listening /
// user_speaking / thinking / speaking / paused), "agent.interrupted" ({turn_id, heard_text}),
// "agent.resumed", "turn.metrics", "participant.joined" ({participant}), "participant.left"
// ({participant_id}), "error", "connection" ({state}), "remotestream" ({stream}: the agent's voice),
// "participanttrack" ({mid, participantId, stream}: another person's audio), "closed".

const SERVER_EVENTS = [
  "joined", "transcript", "agent.state", "agent.interrupted", "agent.resumed", "turn.metrics",
  "participant.joined", "participant.left", "error", "pong",
];

export function defaultDevTokenUrl(location = window.location) {
  return `${location.protocol}//${location.host}/api/v1/dev/token`;
}

/** Ask a dev-mode server for a join token (rooms are created on demand there). */
export async function fetchDevToken({ url = defaultDevTokenUrl(), room = null, name = null } = {}) {
  const body = { ...(room ? { room } : {}), ...(name ? { name } : {}) };
  const response = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || { code: `http_${response.status}`, message: "no join token" };
    throw new Error(`${error.code}: ${error.message} (give the client a token from your backend)`);
  }
  return data.token;
}

export function defaultSignalingUrl(location = window.location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

export class ParleyClient extends EventTarget {
  constructor({ url = defaultSignalingUrl(), token = null, devTokenUrl = null, room = null, name = null,
                iceServers = null, iceTransportPolicy = "all", audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
                gatherTimeoutMs = 2000 } = {}) {
    super();
    Object.assign(this, { url, token, devTokenUrl, room, name, audio, gatherTimeoutMs, iceTransportPolicy });
    this.tracks = {};  // mid -> participant id, as the server last described it
    this.participants = new Map();  // participant id -> {participant_id, identity, name, kind}
    this._mainMid = null;
    this._chain = Promise.resolve();  // offers and answers are applied one at a time, in arrival order
    this.extraIceServers = iceServers;
    this.ws = null;
    this.pc = null;
    this.localStream = null;
    this.remoteStream = null;
    this.participantId = null;
    this._pending = new Map();
    this._analyser = null;
  }

  _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  _send(message) { this.ws.send(JSON.stringify(message)); }

  _expect(type, timeoutMs = 15000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "${type}" from the server in ${timeoutMs} ms`)), timeoutMs);
      this._pending.set(type, (msg) => { clearTimeout(timer); resolve(msg); });
    });
  }

  _onMessage(event) {
    let msg;
    try { msg = JSON.parse(event.data); } catch { return; }
    if (msg.type === "offer") { this._onServerOffer(msg); return; }
    if (msg.type === "joined") for (const p of msg.participants || []) this.participants.set(p.participant_id, p);
    if (msg.type === "participant.joined") this.participants.set(msg.participant.participant_id, msg.participant);
    if (msg.type === "participant.left") this.participants.delete(msg.participant_id);
    const waiter = this._pending.get(msg.type);
    if (waiter) { this._pending.delete(msg.type); waiter(msg); }
    if (msg.type === "error" && this._pending.size) {
      for (const [, w] of this._pending) w(msg);  // let a pending join/offer fail fast
      this._pending.clear();
    }
    if (SERVER_EVENTS.includes(msg.type)) this._emit(msg.type, msg);
  }

  // Someone joined or left: the server offers the new set of audio m-lines; we answer.
  _serial(step) {
    this._chain = this._chain.then(step, step);
    return this._chain;
  }

  _onServerOffer(msg) {
    return this._serial(() => this._answerServerOffer(msg));
  }

  async _answerServerOffer(msg) {
    try {
      this.tracks = msg.tracks || {};
      await this.pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
      await this.pc.setLocalDescription(await this.pc.createAnswer());
      this._send({ type: "answer", sdp: this.pc.localDescription.sdp });
    } catch (err) {
      this._emit("error", { code: "renegotiation_failed", message: String(err && err.message || err) });
    }
  }

  _onTrack(event) {
    const mid = event.transceiver && event.transceiver.mid;
    const stream = new MediaStream([event.track]);
    if (mid !== null && mid === this._mainMid) {
      this.remoteStream = stream;
      this._emit("remotestream", { stream });
    } else {
      this._emit("participanttrack", { mid, participantId: this.tracks[mid] || null, stream });
    }
  }

  async _open() {
    const sep = this.url.includes("?") ? "&" : "?";
    this.ws = new WebSocket(`${this.url}${sep}token=${encodeURIComponent(this.token)}`);
    this.ws.onmessage = (e) => this._onMessage(e);
    this.ws.onclose = () => this._emit("closed", {});
    await new Promise((resolve, reject) => {
      this.ws.onopen = resolve;
      this.ws.onerror = () => reject(new Error(`cannot reach ${this.url}`));
    });
  }

  /** Ask for the microphone, join the room and start the WebRTC call with the agent. */
  async call() {
    if (!this.token) {
      this.token = await fetchDevToken({ url: this.devTokenUrl || defaultDevTokenUrl(), room: this.room, name: this.name });
    }
    this.localStream = await navigator.mediaDevices.getUserMedia({ audio: this.audio, video: false });
    await this._open();
    this._send({ type: "join", ...(this.name ? { name: this.name } : {}) });
    const joined = await this._expect("joined");
    if (joined.type === "error") throw new Error(`${joined.code}: ${joined.message}`);
    this.participantId = joined.participant_id;
    const iceServers = [...(joined.ice_servers || []), ...(this.extraIceServers || [])];
    // "relay" sends everything through the TURN server from `joined` (what a phone behind a strict NAT ends up using).
    this.pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: this.iceTransportPolicy });
    this.pc.onconnectionstatechange = () => this._emit("connection", { state: this.pc.connectionState });
    this.pc.ontrack = (e) => this._onTrack(e);
    for (const track of this.localStream.getAudioTracks()) this.pc.addTrack(track, this.localStream);
    await this.pc.setLocalDescription(await this.pc.createOffer());
    this._mainMid = this.pc.getTransceivers()[0].mid;
    await this._gathered();
    this._send({ type: "offer", sdp: this.pc.localDescription.sdp });
    const answer = await this._expect("answer");
    if (answer.type === "error") throw new Error(`${answer.code}: ${answer.message}`);
    await this._serial(async () => {
      this.tracks = answer.tracks || {};
      await this.pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    });
  }

  // aiortc does not trickle; we send our offer once gathering is complete (or after a timeout).
  _gathered() {
    if (this.pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { this.pc.removeEventListener("icegatheringstatechange", check); resolve(); };
      const check = () => { if (this.pc.iceGatheringState === "complete") done(); };
      this.pc.addEventListener("icegatheringstatechange", check);
      setTimeout(done, this.gatherTimeoutMs);
    });
  }

  /** Microphone level in [0, 1] (RMS of the last few ms), for a meter. */
  micLevel() {
    if (!this.localStream) return 0;
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

  /** Inbound audio statistics of one m-line (default: the agent's), from getStats(). */
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

  /** Leave the call and release the microphone. */
  hangup() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this._send({ type: "leave" });
      this.ws.close();
    }
    if (this.pc) this.pc.close();
    if (this.localStream) this.localStream.getTracks().forEach((t) => t.stop());
    this.pc = null;
    this.localStream = null;
    this._analyser = null;
  }
}
