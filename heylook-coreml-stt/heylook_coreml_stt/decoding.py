"""Whisper decoding over a :class:`~heylook_coreml_stt.runner.Runner`: windows, timestamp rules, greedy and beam.

Long audio is cut into the encoder's windows (30 s for Whisper). Each window is decoded with timestamps; when
its last segment is still open at the window's end, the next window starts at that segment's start timestamp
(Whisper's seek rule), so no speech is cut and the segments' times are continuous over the whole clip.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field

import numpy as np

from heylook_core import Segment, Transcription
from heylook_coreml_stt.folder import TIME_PRECISION, ModelFolder
from heylook_coreml_stt.frontend import HOP_LENGTH, SAMPLE_RATE, log_mel, pad_or_trim
from heylook_coreml_stt.runner import Runner
from heylook_coreml_stt.tokenizer import WhisperTokenizer

logger = logging.getLogger(__name__)

NEG_INF = -np.inf


@dataclass
class DecodeOptions:
    beam_size: int = 1
    temperature: float = 0.0
    language: str | None = None
    task: str = "transcribe"
    prompt: str | None = None
    without_timestamps: bool = False
    max_initial_timestamp: float = 1.0
    sample_len: int | None = None  # new tokens per window; default: half the decoder's context
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    seed: int = 0


@dataclass
class WindowResult:
    tokens: list[int]
    sum_logprob: float
    no_speech_prob: float = 0.0

    @property
    def avg_logprob(self) -> float:
        return self.sum_logprob / max(1, len(self.tokens) + 1)


@dataclass
class Decoder:
    """Decodes windows of one model; ``prefix`` is the prompt and start-of-transcript tokens."""

    runner: Runner
    tokenizer: WhisperTokenizer
    n_vocab: int
    max_tokens: int
    window_seconds: float = 30.0
    options: DecodeOptions = field(default_factory=DecodeOptions)

    def prefix(self) -> tuple[list[int], int]:
        """The tokens before the sampled ones, and the index of ``<|startoftranscript|>`` in them."""
        tokens: list[int] = []
        options = self.options
        if options.prompt and self.tokenizer.sot_prev is not None:
            prompt = self.tokenizer.encode(" " + options.prompt.strip())
            tokens = [self.tokenizer.sot_prev, *prompt[-(self.max_tokens // 2 - 1) :]]
        sot_index = len(tokens)
        tokens += self.tokenizer.sot_sequence(options.language, options.task)
        if options.without_timestamps:
            tokens.append(self.tokenizer.no_timestamps)
        return tokens, sot_index

    def suppress(self, logits: np.ndarray, sampled: list[int]) -> np.ndarray:
        """Mask tokens that may not come next (Whisper's special-token and timestamp rules)."""
        tok = self.tokenizer
        logits = logits.astype(np.float64, copy=True)
        logits[tok.eot + 1 : tok.timestamp_begin] = NEG_INF  # sot, languages, task, notimestamps, ...
        last_timestamp = tok.timestamp_begin + int(round(self.window_seconds / TIME_PRECISION))
        logits[last_timestamp + 1 :] = NEG_INF  # timestamps past the window
        if not sampled:
            logits[tok.eot] = NEG_INF  # something before the end
        if self.options.without_timestamps:
            logits[tok.timestamp_begin :] = NEG_INF
            return logits
        is_ts = [t >= tok.timestamp_begin for t in sampled]
        last_was = len(is_ts) >= 1 and is_ts[-1]
        penultimate_was = len(is_ts) < 2 or is_ts[-2]
        if last_was:
            if penultimate_was:  # a segment just closed and the next opened: text follows
                logits[tok.timestamp_begin :] = NEG_INF
            else:  # text then a timestamp closed a segment: the next opens one, or the window ends
                logits[: tok.eot] = NEG_INF
        stamps = [t for t in sampled if t >= tok.timestamp_begin]
        if stamps:  # timestamps never go back; a closing one moves forward
            floor = stamps[-1] + (1 if last_was and not penultimate_was else 0)
            logits[tok.timestamp_begin : floor] = NEG_INF
        if not sampled:  # the first token is a timestamp, no later than max_initial_timestamp
            logits[: tok.timestamp_begin] = NEG_INF
            limit = tok.timestamp_begin + int(round(self.options.max_initial_timestamp / TIME_PRECISION))
            logits[limit + 1 :] = NEG_INF
        logprobs = _log_softmax(logits)
        timestamp_mass = np.logaddexp.reduce(logprobs[tok.timestamp_begin :])
        if timestamp_mass > logprobs[: tok.timestamp_begin].max():
            logits[: tok.timestamp_begin] = NEG_INF  # a timestamp is likelier than any one text token
        return logits

    def _logits(self, tokens: list[int], features: np.ndarray) -> np.ndarray:
        out = self.runner.decode(np.asarray([tokens], dtype=np.int32), features)
        if out.ndim != 3 or out.shape[1] != len(tokens) or out.shape[2] < self.tokenizer.timestamp_begin:
            raise RuntimeError(f"decoder returned logits of shape {out.shape} for {len(tokens)} tokens")
        return out[0]

    def decode_window(self, features: np.ndarray) -> WindowResult:
        prefix, sot_index = self.prefix()
        budget = self.options.sample_len or self.max_tokens // 2
        budget = min(budget, self.max_tokens - len(prefix))
        if self.options.beam_size > 1 and self.options.temperature == 0.0:
            return self._beam(features, prefix, sot_index, budget)
        return self._greedy(features, prefix, sot_index, budget)

    def detect_language(self, features: np.ndarray) -> str:
        """The most likely language token after ``<|startoftranscript|>`` (multilingual models)."""
        languages = self.tokenizer.languages
        logits = self._logits([self.tokenizer.sot], features)[-1]
        codes = list(languages)
        return codes[int(np.argmax([logits[languages[code]] for code in codes]))]

    def _no_speech(self, rows: np.ndarray, sot_index: int) -> float:
        if self.tokenizer.no_speech is None:
            return 0.0
        return float(np.exp(_log_softmax(rows[sot_index].astype(np.float64))[self.tokenizer.no_speech]))

    def _greedy(self, features: np.ndarray, prefix: list[int], sot_index: int, budget: int) -> WindowResult:
        rng = np.random.default_rng(self.options.seed)
        sampled: list[int] = []
        total = 0.0
        no_speech = 0.0
        for step in range(budget):
            rows = self._logits(prefix + sampled, features)
            if step == 0:
                no_speech = self._no_speech(rows, sot_index)
            logits = self.suppress(rows[-1], sampled)
            logprobs = _log_softmax(logits)
            if self.options.temperature > 0:
                probs = np.exp(_log_softmax(logits / self.options.temperature))
                token = int(rng.choice(len(probs), p=probs / probs.sum()))
            else:
                token = int(np.argmax(logits))
            total += float(logprobs[token])
            if token == self.tokenizer.eot:
                break
            sampled.append(token)
        return WindowResult(sampled, total, no_speech)

    def _beam(self, features: np.ndarray, prefix: list[int], sot_index: int, budget: int) -> WindowResult:
        size = self.options.beam_size
        beams: list[tuple[list[int], float]] = [([], 0.0)]
        finished: list[tuple[list[int], float]] = []
        no_speech = 0.0
        for step in range(budget):
            candidates: list[tuple[list[int], float]] = []
            for sampled, score in beams:
                rows = self._logits(prefix + sampled, features)
                if step == 0:
                    no_speech = self._no_speech(rows, sot_index)
                logprobs = _log_softmax(self.suppress(rows[-1], sampled))
                for token in np.argsort(-logprobs)[: size + 1]:
                    if np.isfinite(logprobs[token]):
                        candidates.append(([*sampled, int(token)], score + float(logprobs[token])))
            candidates.sort(key=lambda item: item[1], reverse=True)
            beams = []
            for sampled, score in candidates:
                if sampled[-1] == self.tokenizer.eot:
                    finished.append((sampled[:-1], score))
                else:
                    beams.append((sampled, score))
                if len(beams) == size:
                    break
            if not beams:
                break
            # Scores only fall as tokens are added: once enough hypotheses have ended and no live beam scores
            # above the best of them, none can overtake it.
            if len(finished) >= size and max(score for _, score in beams) < max(score for _, score in finished):
                break
        pool = finished or beams
        best, score = max(pool, key=lambda item: item[1] / (len(item[0]) + 1))
        return WindowResult(best, score, no_speech)


def transcribe(runner: Runner, folder: ModelFolder, samples: np.ndarray, options: DecodeOptions) -> Transcription:
    """Transcribe ``samples`` (16 kHz mono float32) whole, window by window."""
    tokenizer = folder.tokenizer
    decoder = Decoder(runner, tokenizer, folder.n_vocab, folder.max_tokens, folder.window_seconds, options)
    duration = samples.size / SAMPLE_RATE
    mel = log_mel(samples, folder.n_mels, padding=folder.n_frames * HOP_LENGTH)
    content_frames = samples.size // HOP_LENGTH
    frame_seconds = HOP_LENGTH / SAMPLE_RATE
    segments: list[Segment] = []
    seek = 0
    while seek < content_frames:
        size = min(folder.n_frames, content_frames - seek)
        window = pad_or_trim(mel[:, seek : seek + size], folder.n_frames)[None].astype(np.float32)
        features = runner.encode(window)
        if options.language is None:
            options.language = decoder.detect_language(features) if tokenizer.multilingual else "en"
        result = decoder.decode_window(features)
        offset = seek * frame_seconds
        if result.no_speech_prob > options.no_speech_threshold and result.avg_logprob < options.logprob_threshold:
            seek += size  # silence
            continue
        pieces, advance = split_window(result.tokens, tokenizer, size, folder.input_stride)
        for start, end, tokens in pieces:
            text = tokenizer.decode(tokens)
            if not text.strip():
                continue
            segments.append(
                Segment(
                    id=len(segments),
                    start=round(offset + start, 3),
                    end=round(min(offset + end, duration), 3),
                    text=text,
                    tokens=tokens,
                    avg_logprob=result.avg_logprob,
                    compression_ratio=compression_ratio(text),
                    no_speech_prob=result.no_speech_prob,
                    temperature=options.temperature,
                )
            )
        seek += max(1, advance)
    return Transcription(
        text="".join(s.text for s in segments).strip(),
        language=options.language or "en",
        duration=duration,
        segments=segments,
    )


def split_window(
    tokens: list[int], tokenizer: WhisperTokenizer, size: int, input_stride: int
) -> tuple[list[tuple[float, float, list[int]]], int]:
    """The window's segments as (start s, end s, text tokens), and how many mel frames to move forward.

    A window that ends inside a segment (text after the last timestamp, or an opening timestamp without its
    closing one) moves forward only to that segment's start, so the next window decodes it whole.
    """
    begin = tokenizer.timestamp_begin
    is_ts = [t >= begin for t in tokens]
    single_ending = len(tokens) >= 2 and not is_ts[-2] and is_ts[-1]
    consecutive = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]
    pieces: list[tuple[float, float, list[int]]] = []
    if consecutive:
        slices = consecutive + ([len(tokens)] if single_ending else [])
        last = 0
        for current in slices:
            piece = tokens[last:current]
            start = (piece[0] - begin) * TIME_PRECISION
            end = (piece[-1] - begin) * TIME_PRECISION
            pieces.append((start, end, [t for t in piece if t < tokenizer.eot]))
            last = current
        if single_ending:
            return pieces, size
        # Resume at the timestamp that opened the unfinished segment.
        return pieces, (tokens[last - 1] - begin) * input_stride
    stamps = [t for t in tokens if t >= begin]
    end = size * HOP_LENGTH / SAMPLE_RATE
    if stamps and stamps[-1] != begin:
        end = (stamps[-1] - begin) * TIME_PRECISION
    start = (stamps[0] - begin) * TIME_PRECISION if stamps and stamps[0] != stamps[-1] else 0.0
    pieces.append((start, end, [t for t in tokens if t < tokenizer.eot]))
    return pieces, size


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data))) if data else 0.0


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    finite = logits[np.isfinite(logits)]
    top = finite.max() if finite.size else 0.0
    shifted = logits - top
    return shifted - np.log(np.exp(shifted).sum())
