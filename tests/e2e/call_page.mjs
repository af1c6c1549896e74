// Open Parley's bundled page in Debian's headless chromium with a fake microphone (a WAV file),
// press Call, and report what the page saw as one JSON line on stdout.
//   node call_page.mjs <page-url> <wav> <timeout-ms> [screenshot.png] [answer|barge-in|duo|embed|reconnect|renegotiation|realtime]
// duo: a second browser (fake mic: $LISTENER_WAV) joins room "duo" first and listens; the first
// browser then speaks. The report says what the listener heard: the speaker, and the agent.
import net from "node:net";
import { chromium } from "playwright-core";

const [url, wav, timeoutArg, screenshot, expect = "answer"] = process.argv.slice(2);
const timeout = Number(timeoutArg || 60000);
const result = { ok: false, console: [] };

function launch(micWav) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    ignoreDefaultArgs: ["--mute-audio"],
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
      `--use-file-for-fake-audio-capture=${micWav}`, "--autoplay-policy=no-user-gesture-required",
      "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
    ],
  });
}

// A page of its own (its own browser context); `initScript` runs in it before the page's own scripts.
async function open(browser, pageUrl, label, initScript = null) {
  const context = await browser.newContext();
  if (initScript) await context.addInitScript(initScript);
  const page = await context.newPage();
  page.on("console", (msg) => result.console.push(`${label} ${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (err) => result.console.push(`${label} pageerror: ${err.message}`));
  await page.goto(pageUrl, { timeout: 15000 });
  return page;
}

// Inbound audio of the m-line carrying `source` ("agent" or a participant id), once it has energy.
async function heardFrom(page, source) {
  const started = Date.now();
  let stats = null;
  while (Date.now() - started < timeout) {
    stats = await page.evaluate(async (src) => {
      const p = window.parley;
      const mid = src === "agent" ? p._mainMid : Object.keys(p.tracks).find((k) => p.tracks[k] === src);
      return mid === undefined ? null : p.inboundAudioStats(mid);
    }, source);
    if (stats && stats.bytesReceived > 0 && stats.totalAudioEnergy > 0) break;
    await page.waitForTimeout(200);
  }
  return stats;
}

async function duo(browser) {
  const other = await launch(process.env.LISTENER_WAV);
  let listener = null, speaker = null;
  try {
    listener = await open(other, `${url}?room=duo&name=Lee`, "listener");
    await listener.click("#call");
    await listener.waitForFunction(() => window.parley && window.parley.pc && window.parley.pc.connectionState === "connected", null, { timeout });
    speaker = await open(browser, `${url}?room=duo&name=Sam`, "speaker");
    await speaker.click("#call");
    await speaker.waitForFunction(() => window.parley && window.parley.participantId, null, { timeout });
    const speakerId = await speaker.evaluate(() => window.parley.participantId);
    await listener.waitForSelector("#transcript li.peer:not(.partial)", { timeout });
    result.peer_transcript = await listener.textContent("#transcript li.peer:not(.partial)");
    await listener.waitForSelector("#transcript li.agent:not(.partial)", { timeout });
    result.agent_text = await listener.textContent("#transcript li.agent:not(.partial) span");
    result.listener_heard_speaker = await heardFrom(listener, speakerId);
    result.listener_heard_agent = await heardFrom(listener, "agent");
    result.speaker_heard_agent = await heardFrom(speaker, "agent");
    result.speaker_lines = await speaker.$$eval("#transcript li", (els) => els.map((e) => e.textContent));
    result.people = await listener.textContent("#people");
    if (screenshot) await listener.screenshot({ path: screenshot, fullPage: true });
    await speaker.click("#hangup");
    await listener.click("#hangup");
    result.ok = true;
  } finally {
    for (const [label, page] of [["listener", listener], ["speaker", speaker]]) {
      if (page) result[`${label}_page_error`] = await page.textContent("#error").catch(() => null);
    }
    await other.close();
  }
}

// echo-loop: a speakerphone inside the browser. Before the page's scripts run, RTCPeerConnection's
// addTrack is wrapped so the microphone track sent is the fake mic mixed (WebAudio) with every remote
// track received, 150 ms later at -10 dB: the agent's voice comes back in the microphone as it would
// from a loudspeaker. With ?aec=0 Chromium's own echo canceller is off, so only the server's can help.
const ECHO_LOOP = () => {
  const addTrack = RTCPeerConnection.prototype.addTrack;
  RTCPeerConnection.prototype.addTrack = function (track, ...streams) {
    if (track.kind !== "audio") return addTrack.call(this, track, ...streams);
    const ctx = new AudioContext({ sampleRate: 48000 });
    const out = ctx.createMediaStreamDestination();
    ctx.createMediaStreamSource(new MediaStream([track])).connect(out);
    const delay = ctx.createDelay(1.0);
    delay.delayTime.value = 0.15;
    const gain = ctx.createGain();
    gain.gain.value = 0.32;
    delay.connect(gain).connect(out);
    this.addEventListener("track", (event) => {
      const sink = new Audio();  // Chromium feeds a remote track to WebAudio only while something plays it
      sink.muted = true;
      sink.srcObject = new MediaStream([event.track]);
      sink.play().catch(() => {});
      ctx.createMediaStreamSource(new MediaStream([event.track])).connect(delay);
    });
    ctx.resume();
    window.__echoLoop = { ctx };
    return addTrack.call(this, out.stream.getAudioTracks()[0], ...streams);
  };
};

async function echoLoop(browser) {
  const page = await open(browser, url, "page", ECHO_LOOP);
  await page.evaluate(() => {
    window.__events = [];
    const watch = () => {
      if (!window.parley) return setTimeout(watch, 50);
      for (const kind of ["agentState", "agentInterrupted"]) {
        window.parley.on(kind, (d) => window.__events.push({ kind, state: d && d.state, at: Date.now() }));
      }
    };
    watch();
  });
  await page.click("#call");
  await page.waitForSelector("#transcript li.user:not(.partial)", { timeout });
  result.user_transcript = await page.textContent("#transcript li.user:not(.partial) span");
  const sentEnergy = () => page.evaluate(async () => {
    const stats = await window.parley.pc.getStats();
    let energy = null;
    stats.forEach((s) => { if (s.type === "media-source" && s.kind === "audio") energy = s.totalAudioEnergy; });
    return energy;
  });
  const before = await sentEnergy();  // the question is over: from here the fake mic is silent
  // The reply: wait until the agent has spoken and is listening again (or give up after the timeout).
  await page.waitForFunction(() => {
    const ev = window.__events;
    const spoke = ev.findIndex((e) => e.kind === "agentState" && e.state === "speaking");
    return spoke >= 0 && ev.slice(spoke).some((e) => e.kind === "agentState" && e.state === "listening");
  }, null, { timeout }).catch(() => { result.reply_unfinished = true; });
  // What the microphone we send carried while the agent spoke: only the looped echo (the fake mic is silent).
  result.echo_energy = (await sentEnergy()) - before;
  result.events = await page.evaluate(() => window.__events);
  result.agent_lines = await page.$$eval("#transcript li.agent span", (els) => els.map((e) => e.textContent));
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  await page.click("#hangup");
  result.ok = true;
}

// latency: what the caller hears, timed inside the browser. Before the page's scripts run, the microphone
// track it sends and every remote track it receives are fed (WebAudio, one clock) into two channels of one
// ScriptProcessor, which keeps each block's peak: the caller's end of speech and the agent's first sound
// are read from the same sample counter. The page plays the agent as usual (its own <audio> element).
const LATENCY_TAP = () => {
  const addTrack = RTCPeerConnection.prototype.addTrack;
  RTCPeerConnection.prototype.addTrack = function (track, ...streams) {
    if (track.kind !== "audio" || window.__tap) return addTrack.call(this, track, ...streams);
    const ctx = new AudioContext({ sampleRate: 48000 });
    const merger = ctx.createChannelMerger(2);
    const block = 512;
    const tap = { rate: ctx.sampleRate, block, mic: [], agent: [] };
    const processor = ctx.createScriptProcessor(block, 2, 1);
    processor.onaudioprocess = (event) => {
      for (const [channel, peaks] of [[0, tap.mic], [1, tap.agent]]) {
        const data = event.inputBuffer.getChannelData(channel);
        let peak = 0;
        for (let i = 0; i < data.length; i++) { const v = Math.abs(data[i]); if (v > peak) peak = v; }
        peaks.push(Math.round(peak * 10000) / 10000);
      }
    };
    const mute = ctx.createGain();
    mute.gain.value = 0;
    merger.connect(processor).connect(mute).connect(ctx.destination);
    ctx.createMediaStreamSource(new MediaStream([track])).connect(merger, 0, 0);
    this.addEventListener("track", (event) => {
      const sink = new Audio();  // Chromium feeds a remote track to WebAudio only while something plays it
      sink.muted = true;
      sink.srcObject = new MediaStream([event.track]);
      sink.play().catch(() => {});
      ctx.createMediaStreamSource(new MediaStream([event.track])).connect(merger, 0, 1);
    });
    ctx.resume();
    window.__tap = tap;
    return addTrack.call(this, track, ...streams);
  };
};

async function latency(browser) {
  const page = await open(browser, url, "page", LATENCY_TAP);
  await page.click("#call");
  await page.waitForFunction(() => window.__tap, null, { timeout });
  await page.waitForTimeout(Number(process.env.LISTEN_MS || 60000));  // the whole fake-mic file, once
  result.tap = await page.evaluate(() => window.__tap);
  result.user_lines = await page.$$eval("#transcript li.user span", (els) => els.map((e) => e.textContent));
  result.agent_lines = await page.$$eval("#transcript li.agent span", (els) => els.map((e) => e.textContent));
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  await page.click("#hangup");
  result.ok = true;
}

async function single(browser) {
  const page = await open(browser, url, "page");
  await page.click("#call");
  const started = Date.now();
  await page.waitForSelector("#transcript li.user:not(.partial)", { timeout });
  // Wait until the agent's audio has reached the page with a non-zero level.
  let stats = null;
  while (Date.now() - started < timeout) {
    stats = await page.evaluate(() => window.parley.inboundAudioStats());
    if (stats && stats.bytesReceived > 0 && (stats.audioLevel > 0 || stats.totalAudioEnergy > 0)) break;
    await page.waitForTimeout(200);
  }
  result.inbound_audio = stats;
  // The question as the page shows it once the agent answers: words after a pause come back with the same
  // utterance_id and update the line, so the first final line may still be the question's first half.
  result.user_transcript = await page.textContent("#transcript li.user:not(.partial) span");
  result.user_lang = await page.getAttribute("#transcript li.user:not(.partial) span", "lang");
  if (expect === "barge-in") {
    // The fake mic asks a second question while the agent is still answering the first.
    await page.waitForSelector("#transcript li.agent.interrupted", { timeout });
    result.interrupted_text = await page.textContent("#transcript li.agent.interrupted span");
    await page.waitForFunction(() => document.querySelectorAll("#transcript li.agent:not(.partial)").length >= 2, null, { timeout });
    const users = await page.$$eval("#transcript li.user:not(.partial) span", (els) => els.map((e) => e.textContent));
    const agents = await page.$$eval("#transcript li.agent span", (els) => els.map((e) => e.textContent));
    result.user_lines = users;
    result.agent_lines = agents;
  }
  await page.waitForSelector("#transcript li.agent", { timeout: 15000 }).catch(() => {});
  // More than the reply's first chunk (4 words, or a clause such as "我是Parley，"): its whole text or 24 characters.
  await page.waitForFunction(() => {
    const li = document.querySelector("#transcript li.agent");
    return li && (!li.classList.contains("partial") || li.querySelector("span").textContent.length >= 24);
  }, null, { timeout: 15000 }).catch(() => {});
  result.agent_text = await page.textContent("#transcript li.agent span").catch(() => null);
  result.agent_state = await page.getAttribute("#agent-state", "data-state");
  result.metrics_rows = await page.$$eval("#metrics tbody tr", (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
  result.status = await page.textContent("#status");
  result.candidate_types = await page.evaluate(() => window.parley.selectedCandidateTypes());
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  await page.click("#hangup");
  result.ok = true;
}

// The embed example (examples/embed/index.html, served by examples/backend.py on another origin).
async function embed(browser) {
  const page = await open(browser, url, "embed");
  await page.click("#talk");
  await page.waitForSelector("#log li[data-speaker=user]:not(.partial)", { timeout });
  await page.waitForSelector("#log li[data-speaker=agent]", { timeout });
  result.agent_text = await page.textContent("#log li[data-speaker=agent] span");
  // Once the agent answers, the caller's line holds the whole question (see single()).
  result.user_transcript = await page.textContent("#log li[data-speaker=user]:not(.partial) span");
  const started = Date.now();
  let stats = null;
  while (Date.now() - started < timeout) {
    stats = await page.evaluate(() => window.call.inboundAudioStats());
    if (stats && stats.bytesReceived > 0 && stats.totalAudioEnergy > 0) break;
    await page.waitForTimeout(200);
  }
  result.inbound_audio = stats;
  result.page_origin = await page.evaluate(() => location.origin);
  result.sdk_origin = await page.evaluate(() => new URL(window.call.url).host);
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  await page.click("#end");
  result.state_after_end = await page.textContent("#state");
  result.ok = true;
}

// A TCP proxy in front of Parley for the signaling WebSocket only, so the test can cut it.
function signalingProxy(port, target) {
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    for (const s of [client, upstream]) { sockets.add(s); s.on("close", () => sockets.delete(s)); s.on("error", () => {}); }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.listen(port, "127.0.0.1");
  const cut = () => { const n = sockets.size; for (const s of sockets) s.destroy(); return n; };
  return { cut, close: () => { server.close(); return cut(); } };
}

async function healthz() {
  return (await fetch(`${process.env.PARLEY_URL}/healthz`)).json();
}

// unreachable: the proxy stops for good; the SDK must give up after ?reconnect_ms and end the call.
async function reconnect(browser, unreachable = false) {
  const parley = new URL(process.env.PARLEY_URL);
  const proxy = signalingProxy(Number(process.env.PROXY_PORT), { host: parley.hostname, port: Number(parley.port) });
  try {
    // The page itself comes through the proxy, so its WebSocket (same origin) does too.
    const pageUrl = new URL(url);
    pageUrl.port = process.env.PROXY_PORT;
    if (unreachable) pageUrl.searchParams.set("reconnect_ms", "3000");
    const page = await open(browser, pageUrl.toString(), "page");
    await page.click("#call");
    await page.waitForFunction(() => window.parley && window.parley.participantId, null, { timeout });
    await page.evaluate(() => {
      window.__events = [];
      for (const kind of ["reconnecting", "reconnected", "ended", "error"]) {
        window.parley.on(kind, (d) => window.__events.push({ kind, at: Date.now(), code: d && d.code, attempt: d && d.attempt }));
      }
    });
    await page.waitForSelector("#transcript li.agent", { timeout });  // the first question is being answered
    result.first_participant = await page.evaluate(() => window.parley.participantId);
    result.calls_before_cut = (await healthz()).calls;
    const cutAt = Date.now();
    result.sockets_cut = unreachable ? proxy.close() : proxy.cut();
    await page.waitForFunction(() => window.__events.some((e) => e.kind === "reconnected" || e.kind === "ended"), null, { timeout: 30000 });
    result.events = await page.evaluate(() => window.__events);
    if (unreachable) {
      result.ended_ms = result.events.find((e) => e.kind === "ended").at - cutAt;
      await page.waitForTimeout(1000);
      result.calls_after_end = (await healthz()).calls;
      result.status = await page.textContent("#status");
      result.mic_released = await page.evaluate(() => window.parley.localStream === null);
      result.call_button_enabled = await page.isEnabled("#call");
      result.ok = true;
      return;
    }
    const back = result.events.find((e) => e.kind === "reconnected");
    result.reconnect_ms = back ? back.at - cutAt : null;
    result.second_participant = await page.evaluate(() => window.parley.participantId);
    await page.waitForTimeout(1500);
    result.calls_after_reconnect = (await healthz()).calls;
    // The fake mic asks a second question a while later: it must be answered on the rejoined call.
    await page.waitForFunction(() => document.querySelectorAll("#transcript li.user:not(.partial)").length >= 2, null, { timeout });
    await page.waitForFunction(() => document.querySelectorAll("#transcript li.agent").length >= 2, null, { timeout });
    result.user_lines = await page.$$eval("#transcript li.user:not(.partial) span", (els) => els.map((e) => e.textContent));
    result.agent_lines = await page.$$eval("#transcript li.agent span", (els) => els.map((e) => e.textContent));
    if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
    await page.click("#hangup");
    await page.waitForTimeout(1500);
    result.calls_after_hangup = (await healthz()).calls;
    result.ok = true;
  } finally {
    proxy.close();
  }
}

// The first page ignores one server offer (someone joined): the server ends its call with
// renegotiation_timeout, and the SDK must rejoin and then hear the newcomer.
async function renegotiation(browser) {
  const first = await open(browser, `${url}?room=reneg&name=One`, "first");
  await first.click("#call");
  await first.waitForFunction(() => window.parley && window.parley.pc && window.parley.pc.connectionState === "connected", null, { timeout });
  await first.evaluate(() => {
    window.__events = [];
    for (const kind of ["reconnecting", "reconnected", "ended", "error"]) {
      window.parley.on(kind, (d) => window.__events.push({ kind, at: Date.now(), code: d && d.code }));
    }
    const client = window.parley;
    const answer = client._answerServerOffer;
    client._answerServerOffer = async () => { client._answerServerOffer = answer; };  // drop the next offer, once
  });
  result.first_participant = await first.evaluate(() => window.parley.participantId);
  const second = await open(browser, `${url}?room=reneg&name=Two`, "second");
  await second.click("#call");
  await second.waitForFunction(() => window.parley && window.parley.participantId, null, { timeout });
  result.second_participant = await second.evaluate(() => window.parley.participantId);
  await first.waitForFunction(() => window.__events.some((e) => e.kind === "reconnected" || e.kind === "ended"), null, { timeout: 30000 });
  result.events = await first.evaluate(() => window.__events);
  result.rejoined_participant = await first.evaluate(() => window.parley.participantId);
  await first.waitForFunction((id) => Object.values(window.parley.tracks).includes(id), result.second_participant, { timeout });
  result.first_tracks = await first.evaluate(() => window.parley.tracks);
  result.calls = (await healthz()).calls;
  await second.click("#hangup");
  await first.click("#hangup");
  result.ok = true;
}

// realtime: the Realtime WebRTC example page (/web/realtime.html, written to OpenAI's hosted flow) asks one question.
async function realtime(browser) {
  const page = await open(browser, url, "realtime");
  await page.click("#start");
  await page.waitForFunction(() => window.realtimeEvents.some((e) => e.type === "response.done"), null, { timeout });
  result.events = await page.evaluate(() => window.realtimeEvents.map((e) => e.type));
  result.user_transcript = await page.evaluate(() => (window.realtimeEvents.find(
    (e) => e.type === "conversation.item.input_audio_transcription.completed") || {}).transcript);
  result.agent_text = await page.evaluate(() => (window.realtimeEvents.find(
    (e) => e.type === "response.output_audio_transcript.done") || {}).transcript);
  result.response_status = await page.evaluate(() => window.realtimeEvents.find((e) => e.type === "response.done").response.status);
  result.inbound_audio = await page.evaluate(async () => {
    const stats = await window.realtimePc.getStats();
    for (const s of stats.values()) if (s.type === "inbound-rtp" && s.kind === "audio") return s;
    return null;
  });
  result.lines = await page.$$eval("#transcript li", (els) => els.map((e) => e.textContent));
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  await page.click("#stop");
  result.ok = true;
}

const browser = await launch(wav);
try {
  const modes = { duo, embed, reconnect, renegotiation, realtime, "reconnect-fails": (b) => reconnect(b, true), "echo-loop": echoLoop, latency };
  await (modes[expect] || single)(browser);
} catch (err) {
  result.error = String(err && err.message || err);
} finally {
  await browser.close();
  console.log(JSON.stringify(result));
}
