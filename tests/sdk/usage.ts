// Compiled with `tsc --noEmit` by tests/unit/test_sdk_types.py: the SDK's types must accept what
// README's "Embedding" shows, and reject misuse (the @ts-expect-error lines must stay errors).
import { connect, ParleyClient, ParleyError, type TranscriptMessage } from "../../web/parley.js";

async function demo(token: string): Promise<void> {
  const call: ParleyClient = await connect({
    url: "https://parley.example.org",
    token,
    iceServers: [{ urls: "stun:stun.example.org:3478" }],
    reconnect: { timeoutMs: 10_000 },
  });
  const stop = call.on("transcript", (t: TranscriptMessage) => console.log(t.name, t.text, t.final));
  call.on("agentState", (s) => console.log(s.state === "thinking"));
  call.on("turnMetrics", (m) => console.log(m.stt_ms ?? 0));
  call.on("participantJoined", (p) => console.log(p.participant.name));
  call.on("participantLeft", (p) => console.log(p.participant_id));
  call.on("agentAudio", ({ stream }) => console.log(stream.id));
  call.on("error", (e) => console.log(e.code));
  call.on("ended", ({ reason }) => console.log(reason));
  call.mute();
  const level: number = call.micLevel();
  console.log(level, call.muted, call.participants.size);
  stop();
  call.hangUp();
  // @ts-expect-error: no such event
  call.on("agentstate", () => {});
  // @ts-expect-error: a token is a string
  await connect({ token: 42 });
  console.log(new ParleyError("x", "y").code);
}
void demo;
