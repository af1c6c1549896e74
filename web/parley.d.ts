// Types of the Parley JS SDK (web/parley.js). Message shapes follow docs/protocol.md.

/** Someone in a room: a person or the room's AI agent. */
export interface Participant {
  participant_id: string;
  identity: string;
  name: string;
  kind: "human" | "agent";
  /** Unix time (seconds). */
  joined_at: number;
}

export interface IceServerEntry {
  urls: string[] | string;
  username?: string | null;
  credential?: string | null;
}

export interface JoinedMessage {
  type: "joined";
  participant_id: string;
  room: string;
  identity: string;
  ice_servers: IceServerEntry[];
  participants: Participant[];
}

export interface TranscriptMessage {
  type: "transcript";
  speaker: "user" | "agent";
  participant_id: string;
  name: string;
  turn_id: number;
  text: string;
  /** People: false for interim passes while they speak, then one final. Agent: true once played. */
  final: boolean;
  /** People: one line per utterance; a question continued after a pause updates the same id's line. Agent: null. */
  utterance_id?: number | null;
}

export type AgentStateName = "listening" | "user_speaking" | "thinking" | "speaking" | "paused";

export interface AgentStateMessage {
  type: "agent.state";
  state: AgentStateName;
  turn_id: number | null;
}

export interface AgentInterruptedMessage {
  type: "agent.interrupted";
  turn_id: number;
  /** What the caller heard of the reply before cutting in; "" withdraws a reply of which nothing was played. */
  heard_text: string;
}

export interface AgentResumedMessage {
  type: "agent.resumed";
  turn_id: number;
}

/** Per-stage latency of one agent turn, milliseconds on the server clock (null: the stage did not run). */
export interface TurnMetricsMessage {
  type: "turn.metrics";
  turn_id: number;
  endpoint_wait_ms: number | null;
  stt_ms: number | null;
  llm_first_token_ms: number | null;
  llm_first_chunk_ms: number | null;
  tts_first_audio_ms: number | null;
  playout_wait_ms: number | null;
  first_audio_sent_ms: number | null;
  /** Inference time of the end-of-turn model (inside endpoint_wait_ms); absent or null with silence endpointing. */
  end_of_turn_ms?: number | null;
}

export interface ParticipantJoinedMessage {
  type: "participant.joined";
  participant: Participant;
}

export interface ParticipantLeftMessage {
  type: "participant.left";
  participant_id: string;
}

/** A typed error from the server, or from the SDK (`connection_lost`, `renegotiation_failed`). */
export interface ErrorMessage {
  type: "error";
  code: string;
  message: string;
  /** `busy`, `server_shutdown`: seconds after which trying again makes sense (the SDK's rejoin waits that long). */
  retry_after_s?: number | null;
}

/** Every event a {@link ParleyClient} emits, with its payload. */
export interface ParleyEvents {
  joined: JoinedMessage;
  transcript: TranscriptMessage;
  agentState: AgentStateMessage;
  agentInterrupted: AgentInterruptedMessage;
  agentResumed: AgentResumedMessage;
  turnMetrics: TurnMetricsMessage;
  participantJoined: ParticipantJoinedMessage;
  participantLeft: ParticipantLeftMessage;
  error: ErrorMessage;
  pong: { type: "pong" };
  /** The agent's voice (it comes back on the microphone's m-line). */
  agentAudio: { stream: MediaStream };
  /** Another person's forwarded audio. */
  participantAudio: { mid: string | null; participantId: string | null; stream: MediaStream };
  connectionState: { state: RTCPeerConnectionState };
  muted: { muted: boolean };
  /** The WebSocket dropped; the SDK is rejoining (attempt 1, 2, …). */
  reconnecting: { attempt: number };
  /** Rejoined: a new peer connection, a new participant id. */
  reconnected: { attempt: number; participantId: string };
  /** The call is over: "hangup", "connection_lost", or the server's final error code. */
  ended: { reason: string; message: string };
}

export interface ReconnectOptions {
  /** Rejoin when the WebSocket drops (default true). */
  enabled?: boolean;
  /** Give up (error `connection_lost`, then `ended`) after this long (default 15000). */
  timeoutMs?: number;
}

export interface ConnectOptions {
  /** Parley's address (`https://host:8080`) or its WebSocket URL (`wss://host/ws`). Default: this page's server. */
  url?: string;
  /** A join token from your backend (POST /api/v1/rooms/{room}/tokens). */
  token?: string | null;
  /** Called for a fresh token before each (re)join, e.g. when tokens are short-lived. */
  tokenProvider?: (() => Promise<string>) | null;
  /** ICE servers added to the ones the server sends in `joined` (STUN/TURN with credentials). */
  iceServers?: RTCIceServer[] | null;
  /** "relay" forces all media through TURN (to test a deployment). */
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** Display name asked of a dev-mode server with the dev token; a token from your backend carries its own name, which wins. */
  name?: string | null;
  /** Dev mode only: without a token, ask `devTokenUrl` for one in this room. */
  room?: string | null;
  /** Dev mode: the language ("en" | "zh" | "auto") of a room the dev token route creates. */
  language?: "en" | "zh" | "auto" | null;
  devTokenUrl?: string | null;
  /** getUserMedia audio constraints (default: echo cancellation, noise suppression, AGC). */
  audio?: MediaTrackConstraints | boolean;
  /** Wait at most this long for ICE gathering before sending the offer (default 2000). */
  gatherTimeoutMs?: number;
  reconnect?: ReconnectOptions;
}

export declare const SERVER_EVENTS: Readonly<Record<string, keyof ParleyEvents>>;
export declare const FINAL_ERROR_CODES: readonly string[];

export declare class ParleyError extends Error {
  constructor(code: string, message: string);
  readonly code: string;
}

export declare function connect(options: ConnectOptions): Promise<ParleyClient>;
export declare function fetchDevToken(options?: { url?: string; room?: string | null; name?: string | null; language?: "en" | "zh" | "auto" | null }): Promise<string>;
export declare function defaultDevTokenUrl(location?: Location): string;
export declare function signalingUrl(url?: string): string;
/** @deprecated use signalingUrl() */
export declare function defaultSignalingUrl(): string;

export declare class ParleyClient extends EventTarget {
  constructor(options?: ConnectOptions);
  readonly url: string;
  token: string | null;
  readonly reconnect: Required<ReconnectOptions>;
  /** m-line mid → participant id whose audio it carries. */
  tracks: Record<string, string>;
  /** Everyone else in the room, by participant id. */
  readonly participants: Map<string, Participant>;
  participantId: string | null;
  pc: RTCPeerConnection | null;
  ws: WebSocket | null;
  localStream: MediaStream | null;
  remoteStream: MediaStream | null;
  readonly ended: boolean;
  readonly muted: boolean;
  on<K extends keyof ParleyEvents>(type: K, handler: (detail: ParleyEvents[K]) => void): () => void;
  call(): Promise<void>;
  mute(): void;
  unmute(): void;
  micLevel(): number;
  inboundAudioStats(mid?: string | null): Promise<{
    bytesReceived: number; audioLevel: number; totalAudioEnergy: number; packetsLost: number; jitter: number;
  } | null>;
  selectedCandidateTypes(): Promise<{ local?: string; remote?: string } | null>;
  hangUp(): void;
  /** @deprecated use hangUp() */
  hangup(): void;
}
