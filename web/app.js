// The bundled page: the JS SDK's first user.
import { ParleyClient } from "/web/parley.js";  // the page uses only the SDK's public API

const $ = (id) => document.getElementById(id);
const callButton = $("call"), hangupButton = $("hangup"), muteButton = $("mute"), statusEl = $("status"), stateEl = $("agent-state");
const transcriptEl = $("transcript"), metricsBody = $("metrics").querySelector("tbody"), errorEl = $("error");
const agentLines = new Map();  // turn_id -> <li> of the agent's reply
const userLines = new Map();  // "participant/utterance id" -> <li>: one line per utterance, interims to final
const peerAudio = new Map();  // m-line mid -> <audio> playing another person
let client = null, meterTimer = null;

function showError(text) { errorEl.textContent = text; errorEl.hidden = !text; }

const CHINESE = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]/;

// A line's text; Chinese is marked lang="zh-Hans", so the browser draws it with simplified-Chinese glyphs
// (the page is lang="en": without it Chromium may pick Japanese forms of the same characters).
function setText(span, text) {
  span.textContent = text;
  if (CHINESE.test(text)) span.lang = "zh-Hans"; else span.removeAttribute("lang");
}

function addLine(speaker, who, text, partial) {
  const li = document.createElement("li");
  li.className = `${speaker}${partial ? " partial" : ""}`;
  li.dataset.speaker = speaker;
  li.innerHTML = "<b></b> <span></span>";
  li.querySelector("b").textContent = `${who}:`;
  setText(li.querySelector("span"), text);
  transcriptEl.appendChild(li);
  li.scrollIntoView({ block: "nearest" });
  return li;
}

function onTranscript(t) {
  if (t.speaker === "user") {
    const mine = t.participant_id === client.participantId;
    // A question continued after a pause comes back with the same utterance_id: it updates its line.
    const key = `${t.participant_id}/${t.utterance_id ?? "open"}`;
    let li = userLines.get(key);
    if (!li) { li = addLine(mine ? "user" : "peer", mine ? "You" : (t.name || "Guest"), t.text, true); userLines.set(key, li); }
    setText(li.querySelector("span"), t.text);
    li.classList.toggle("partial", !t.final);
    if (t.final && t.utterance_id == null) userLines.delete(key);  // a server without utterance ids
    return;
  }
  let li = agentLines.get(t.turn_id);
  if (!li) { li = addLine("agent", t.name || "Agent", t.text, !t.final); agentLines.set(t.turn_id, li); }
  if (li.classList.contains("interrupted")) return;  // what was heard is final
  setText(li.querySelector("span"), t.text);
  li.classList.toggle("partial", !t.final);
}

function onInterrupted(i) {
  const li = agentLines.get(i.turn_id);
  if (!li) return;
  if (!i.heard_text) { li.remove(); agentLines.delete(i.turn_id); return; }  // withdrawn before a word was heard
  setText(li.querySelector("span"), i.heard_text);
  li.classList.remove("partial");
  li.classList.add("interrupted");
}

function onMetrics(m) {
  const row = document.createElement("tr");
  const cells = [m.turn_id, m.endpoint_wait_ms, m.stt_ms, m.llm_first_token_ms, m.tts_first_audio_ms, m.first_audio_sent_ms];
  row.innerHTML = cells.map((v) => `<td>${v ?? "—"}</td>`).join("");
  metricsBody.appendChild(row);
}

function showPeople() {
  const people = [...client.participants.values()].map((p) => p.name + (p.kind === "agent" ? " (agent)" : ""));
  $("people").textContent = people.length ? `with ${people.join(", ")}` : "";
}

function onPeerTrack(detail) {
  let audio = peerAudio.get(detail.mid);
  if (!audio) {
    audio = document.createElement("audio");
    audio.autoplay = true;
    document.body.appendChild(audio);
    peerAudio.set(detail.mid, audio);
  }
  audio.srcObject = detail.stream;
}

function setCalling(on) {
  callButton.disabled = on;
  hangupButton.disabled = !on;
  muteButton.disabled = !on;
  if (!on) muteButton.textContent = "Mute";
  if (!on) { clearInterval(meterTimer); $("mic-level").value = 0; stateEl.textContent = "agent: —"; stateEl.dataset.state = "idle"; }
}

// ?ws= may only name this page's own server: a crafted link must not send the join token and the
// microphone to someone else's. Pages that call another server embed the SDK with its `url` option.
function sameOriginSignaling(value) {
  if (!value) return undefined;
  let target = null;
  try { target = new URL(value, location.href); } catch { /* not a URL */ }
  if (target && target.host === location.host && /^(wss?|https?):$/.test(target.protocol)) return target.toString();
  showError(`?ws=${value} ignored: only this page's own server is allowed`);
  return undefined;
}

callButton.addEventListener("click", async () => {
  showError("");
  setCalling(true);
  statusEl.textContent = "connecting…";
  const params = new URLSearchParams(location.search);
  client = new ParleyClient({
    url: sameOriginSignaling(params.get("ws")),  // ?ws=/path: another signaling path on this page's server
    reconnect: params.get("reconnect_ms") ? { timeoutMs: Number(params.get("reconnect_ms")) } : {},
    // ?aec=0: raw microphone (no echo cancellation, noise suppression or gain control), for tests and diagnosis.
    ...(params.get("aec") === "0" ? { audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } } : {}),
    // ?lang=zh: a Mandarin room; ?lang=auto: answers in the language each question is asked in
    // (each its own room, "default-zh" / "default-auto", unless ?room= names one).
    language: params.get("lang"),
    room: params.get("room") || (["zh", "auto"].includes(params.get("lang")) ? `default-${params.get("lang")}` : null),
    name: params.get("name"), token: params.get("token"),
    iceTransportPolicy: params.get("relay") === "1" ? "relay" : "all",  // ?relay=1: only through TURN
  });
  window.parley = client;  // handy in the console, and for end-to-end tests
  client.on("transcript", onTranscript);
  client.on("turnMetrics", onMetrics);
  client.on("agentInterrupted", onInterrupted);
  client.on("agentState", (detail) => {
    stateEl.textContent = `agent: ${detail.state.replace("_", " ")}`;
    stateEl.dataset.state = detail.state;
  });
  client.on("error", (detail) => showError(`${detail.code}: ${detail.message}`));
  client.on("connectionState", (detail) => { statusEl.textContent = detail.state; });
  client.on("reconnecting", (detail) => { statusEl.textContent = `reconnecting (attempt ${detail.attempt})…`; });
  client.on("reconnected", () => {
    statusEl.textContent = "connected";
    showError("");
    agentLines.clear();  // a rejoined call starts its own turn numbers
    userLines.clear();
  });
  client.on("agentAudio", (detail) => { $("remote-audio").srcObject = detail.stream; });
  client.on("participantAudio", onPeerTrack);
  for (const kind of ["joined", "participantJoined", "participantLeft"]) client.on(kind, showPeople);
  client.on("muted", ({ muted }) => { muteButton.textContent = muted ? "Unmute" : "Mute"; });
  client.on("ended", ({ reason }) => {
    statusEl.textContent = reason === "hangup" ? "idle" : "disconnected";
    setCalling(false);
  });
  try {
    await client.call();
    meterTimer = setInterval(() => { $("mic-level").value = client.micLevel(); }, 100);
  } catch (err) {
    showError(err.message || String(err));
    client.hangUp();
    statusEl.textContent = "failed";
    setCalling(false);
  }
});

hangupButton.addEventListener("click", () => {
  if (client) client.hangUp();
  statusEl.textContent = "idle";
  setCalling(false);
});

muteButton.addEventListener("click", () => {
  if (!client) return;
  if (client.muted) client.unmute(); else client.mute();
});
