"""Test models for the Core ML provider, made at test time.

* :func:`write_tokenizer`: a small Whisper-layout ``tokenizer.json`` (words, then the special tokens in Whisper's
  order; timestamps implicitly after ``<|notimestamps|>``).
* :func:`build_folder`: tiny encoder/decoder ``.mlpackage`` files built with coremltools (MIL programs), with the
  same weights as :class:`StubReference`, their numpy twin.
* :class:`EnergyRunner`: a reference implementation of the runner interface in numpy: its encoder pools the
  log-mel energy per audio-context position, its decoder emits, for every loud stretch of the window, the
  stretch's start timestamp, a word for its length (``short`` under one second, ``long`` otherwise) and its end
  timestamp; a stretch still loud at the window's end is left open. What it says depends only on the audio, so a
  test can place sounds and check the segments the decoding loop makes of them.
* :class:`BigramRunner`: logits from a table indexed by the previous token, for checking greedy against beam search.
"""

from __future__ import annotations

import gc
import json
import warnings
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

# Byte-level entries as in Whisper's GPT-2 vocabulary: "\u0120" (shown as G-dot) is the leading space.
NAMES = ["hello", "world", "short", "long", "A", "B", "C", *[f"w{i}" for i in range(10)]]
WORDS = ["<unk>", *("\u0120" + name for name in NAMES)]
WORD_IDS = {name: index + 1 for index, name in enumerate(NAMES)}
SPECIALS_EN = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>"]
SPECIALS_TAIL = [
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
]
N_TIMESTAMPS = 1501


def write_tokenizer(path: Path, languages: tuple[str, ...] = ("en",), whisper: bool = True) -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    if whisper:
        specials = ["<|endoftext|>", "<|startoftranscript|>", *[f"<|{code}|>" for code in languages], *SPECIALS_TAIL]
        tokenizer.add_special_tokens([AddedToken(s, special=True) for s in specials])
    tokenizer.save(str(path))
    return tokenizer


def vocab_size(languages: tuple[str, ...] = ("en",)) -> int:
    return len(WORDS) + 2 + len(languages) + len(SPECIALS_TAIL) + N_TIMESTAMPS


class StubReference:
    """The stub packages' math in numpy: conv (stride 2) + GELU encoder; embedding + pooled audio + projection."""

    def __init__(self, n_mels: int, n_state: int, n_vocab: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.conv = (rng.standard_normal((n_state, n_mels, 3)) * 0.1).astype(np.float32)
        self.embedding = (rng.standard_normal((n_vocab, n_state)) * 0.5).astype(np.float32)
        self.projection = (rng.standard_normal((n_state, n_vocab)) * 0.5).astype(np.float32)

    def encode(self, mel: np.ndarray) -> np.ndarray:
        x = np.pad(mel[0], ((0, 0), (1, 1)))
        frames = (x.shape[1] - 3) // 2 + 1
        cols = np.stack([x[:, 2 * i : 2 * i + 3] for i in range(frames)])  # (frames, n_mels, 3)
        out = np.einsum("fmk,smk->fs", cols, self.conv)
        gelu = 0.5 * out * (1 + np.tanh(np.sqrt(2 / np.pi) * (out + 0.044715 * out**3)))
        return gelu[None].astype(np.float32)

    def decode(self, tokens: np.ndarray, features: np.ndarray) -> np.ndarray:
        hidden = self.embedding[tokens[0]] + features[0].mean(axis=0)
        return (hidden @ self.projection)[None].astype(np.float32)


def build_folder(
    folder: Path,
    *,
    n_mels: int = 80,
    frames: int = 3000,
    n_state: int = 8,
    n_tokens: int = 448,
    languages: tuple[str, ...] = ("en",),
    decoder_ctx: int | None = None,
    n_vocab: int | None = None,
    tokenizer: bool = True,
    flexible_tokens: bool = False,
) -> StubReference:
    """Write encoder.mlpackage, decoder.mlpackage and (unless ``tokenizer=False``) tokenizer.json into ``folder``."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import get_new_symbol, types

    folder.mkdir(parents=True, exist_ok=True)
    if tokenizer:
        write_tokenizer(folder / "tokenizer.json", languages)
    vocab = n_vocab or vocab_size(languages)
    ctx = frames // 2
    reference = StubReference(n_mels, n_state, vocab)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, n_mels, frames), dtype=types.fp32)])
    def encoder(mel):  # type: ignore[no-untyped-def]
        x = mb.conv(x=mel, weight=reference.conv, strides=[2], pad_type="custom", pad=[1, 1])
        x = mb.gelu(x=x, mode="TANH_APPROXIMATION")
        return mb.transpose(x=x, perm=[0, 2, 1], name="audio_features")

    token_shape = (1, ct.RangeDim(1, n_tokens)) if flexible_tokens else (1, n_tokens)
    features_shape = (1, decoder_ctx or ctx, n_state)

    @mb.program(
        input_specs=[
            mb.TensorSpec(shape=(1, get_new_symbol() if flexible_tokens else n_tokens), dtype=types.int32),
            mb.TensorSpec(shape=features_shape, dtype=types.fp32),
        ]
    )
    def decoder(tokens, features):  # type: ignore[no-untyped-def]
        embedded = mb.gather(x=reference.embedding, indices=tokens, axis=0)
        pooled = mb.reduce_mean(x=features, axes=[1], keep_dims=True)
        return mb.matmul(x=mb.add(x=embedded, y=pooled), y=reference.projection, name="logits")

    options = {
        "convert_to": "mlprogram",
        "minimum_deployment_target": ct.target.macOS13,
        "compute_precision": ct.precision.FLOAT32,
    }
    inputs = [ct.TensorType("tokens", shape=token_shape, dtype=np.int32)] if flexible_tokens else None
    # coremltools 9 leaves the weights' TemporaryDirectory of ct.convert to the garbage collector, whose
    # ResourceWarning would fail the test run (warnings are errors): collect it here with that warning off.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        ct.convert(encoder, **options).save(str(folder / "encoder.mlpackage"))
        decoder_model = ct.convert(decoder, inputs=inputs, **options) if inputs else ct.convert(decoder, **options)
        decoder_model.save(str(folder / "decoder.mlpackage"))
        del decoder_model
        gc.collect()
    return reference


def write_compiled_metadata(folder: Path, role: str, inputs: list[dict], outputs: list[dict]) -> Path:
    """A compiled model's metadata.json as Xcode writes it (the part the provider reads)."""
    path = folder / f"{role}.mlmodelc"
    path.mkdir(parents=True)
    (path / "metadata.json").write_text(json.dumps([{"inputSchema": inputs, "outputSchema": outputs}]))
    return path


def _sot_end(tokens: list[int], sot: int, sot_length: int) -> int:
    """The position after the start-of-transcript sequence (the sampled tokens begin there)."""
    return len(tokens) - 1 - tokens[::-1].index(sot) + sot_length


class EnergyRunner:
    """Reference runner: timestamps around the loud stretches of each window (see the module docstring)."""

    def __init__(self, tokenizer_path: Path, n_vocab: int, strength: float = 20.0, sot_length: int = 1) -> None:
        vocab = Tokenizer.from_file(str(tokenizer_path)).get_vocab(with_added_tokens=True)
        self.eot = vocab["<|endoftext|>"]
        self.sot = vocab["<|startoftranscript|>"]
        self.no_speech = vocab["<|nocaptions|>"]
        self.begin = vocab["<|notimestamps|>"] + 1
        self.short, self.long = WORD_IDS["short"], WORD_IDS["long"]
        self.sot_length = sot_length  # 1 for English-only models; 3 (sot, language, task) for multilingual ones
        self.n_vocab = n_vocab
        self.strength = strength

    def encode(self, mel: np.ndarray) -> np.ndarray:
        energy = mel[0].mean(axis=0)
        pooled = energy[: energy.size // 2 * 2].reshape(-1, 2).mean(axis=1)
        return pooled[None, :, None].astype(np.float32)

    def regions(self, features: np.ndarray) -> list[tuple[int, int]]:
        energy = features[0, :, 0]
        low, high = float(energy.min()), float(energy.max())
        if high - low < 0.5:
            return []
        loud = energy > (low + high) / 2
        edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(np.int8), [0]])))
        return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]

    def expected(self, features: np.ndarray) -> list[int]:
        ctx = features.shape[1]
        stream: list[int] = []
        for start, end in self.regions(features):
            stream += [self.begin + start, self.long if (end - start) * 0.02 >= 1.0 else self.short]
            if end < ctx:
                stream.append(self.begin + end)
        return [*stream, self.eot]

    def decode(self, tokens: np.ndarray, features: np.ndarray) -> np.ndarray:
        ids = [int(t) for t in tokens[0]]
        logits = np.zeros((1, len(ids), self.n_vocab), dtype=np.float32)
        stream = self.expected(features)
        sot_end = _sot_end(ids, self.sot, self.sot_length)
        if len(stream) == 1:
            logits[0, sot_end - 1, self.no_speech] = self.strength
        for position in range(sot_end - 1, len(ids)):
            sampled = ids[sot_end : position + 1]
            follows = stream[: len(sampled)] == sampled and len(sampled) < len(stream)
            logits[0, position, stream[len(sampled)] if follows else self.eot] += self.strength
        return logits


class BigramRunner:
    """Logits from ``table[previous token]``; the encoder is the identity on a zero vector."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table

    def encode(self, mel: np.ndarray) -> np.ndarray:
        return np.zeros((1, 1, 1), dtype=np.float32)

    def decode(self, tokens: np.ndarray, features: np.ndarray) -> np.ndarray:
        return self.table[tokens[0]][None].astype(np.float32)
