"""The model folder: a Core ML Whisper-style encoder and decoder plus the tokenizer, checked before anything runs.

Layout (file names are matched case-insensitively; ``.mlpackage`` or compiled ``.mlmodelc``)::

    my-whisper/
      encoder.mlpackage   input  (1, n_mels, frames) float: log-mel features of one window (frames = 3000 for 30 s)
                          output (1, n_audio_ctx, n_state) float: audio features
      decoder.mlpackage   inputs (1, n_tokens) int32 token ids (fixed length: padded; or a flexible range)
                                 (1, n_audio_ctx, n_state) float: the encoder's output
                          output (1, n_tokens, n_vocab) float: logits for every position
      tokenizer.json      Whisper's tokenizer (Hugging Face tokenizers format)

Shapes are read from the packages' specs (``Manifest``/``model.mlmodel`` of an ``.mlpackage``, ``metadata.json`` of
an ``.mlmodelc``) and checked against each other and the tokenizer; every problem is a :class:`ModelFolderError`
that names the file and what to change.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heylook_coreml_stt.frontend import HOP_LENGTH, SAMPLE_RATE
from heylook_coreml_stt.tokenizer import TokenizerError, WhisperTokenizer

SUFFIXES = (".mlpackage", ".mlmodelc")
TIME_PRECISION = 0.02


class ModelFolderError(ValueError):
    """The model folder is incomplete or its models do not fit together."""


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str  # float32, float16, int32, double
    max_shape: tuple[int, ...] | None = None  # upper bounds when the shape is flexible (-1: unbounded)


@dataclass(frozen=True)
class PackageSpec:
    path: Path
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


@dataclass(frozen=True)
class ModelFolder:
    path: Path
    encoder: PackageSpec
    decoder: PackageSpec
    tokenizer: WhisperTokenizer
    n_mels: int
    n_frames: int
    n_audio_ctx: int
    n_state: int
    n_vocab: int
    max_tokens: int  # the longest token sequence the decoder takes
    fixed_tokens: bool  # the decoder's token input has one fixed length (inputs are padded to it)
    mel_input: str
    features_output: str
    tokens_input: str
    features_input: str
    logits_output: str

    @property
    def window_seconds(self) -> float:
        return self.n_frames * HOP_LENGTH / SAMPLE_RATE

    @property
    def input_stride(self) -> int:
        """Mel frames per audio-context position (2 in Whisper: 3000 frames, 1500 positions)."""
        return self.n_frames // self.n_audio_ctx


def find_package(folder: Path, role: str) -> Path:
    """The ``role`` (encoder / decoder) package: ``<role>.mlpackage`` first, else any package whose name has it."""
    packages = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    exact = [p for p in packages if p.stem.lower() == role]
    named = exact or [p for p in packages if role in p.stem.lower()]
    if not named:
        found = ", ".join(p.name for p in packages) or "no Core ML packages"
        raise ModelFolderError(
            f"{folder}: no {role} model: expected {role}.mlpackage or {role}.mlmodelc (found: {found})"
        )
    named.sort(key=lambda p: (p.suffix.lower() != ".mlpackage", p.name))  # prefer the source package
    return named[0]


_DTYPES = {"FLOAT32": "float32", "FLOAT16": "float16", "INT32": "int32", "DOUBLE": "double", "FLOAT64": "double"}


def _from_proto(feature: object) -> Tensor:
    from coremltools.proto import FeatureTypes_pb2

    array = feature.type.multiArrayType  # type: ignore[attr-defined]
    dtype = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType)
    shape = tuple(int(d) for d in array.shape)
    max_shape = None
    if array.WhichOneof("ShapeFlexibility") == "shapeRange":
        ranges = array.shapeRange.sizeRanges
        shape = tuple(int(r.lowerBound) for r in ranges)
        max_shape = tuple(int(r.upperBound) for r in ranges)
    elif array.WhichOneof("ShapeFlexibility") == "enumeratedShapes":
        shapes = [tuple(int(d) for d in s.shape) for s in array.enumeratedShapes.shapes]
        max_shape = tuple(max(dims) for dims in zip(*shapes, strict=True))
    return Tensor(feature.name, shape, _DTYPES.get(dtype, dtype.lower()), max_shape)  # type: ignore[attr-defined]


def _parse_shape(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"-?\d+", text))


def _from_metadata(item: dict[str, Any]) -> Tensor:
    dtype = str(item.get("dataType", "")).upper()
    shape = _parse_shape(str(item.get("shape", "[]")))
    max_shape = None
    if "shapeRange" in item:  # "[[1, 1], [1, 448]]"
        bounds = json.loads(item["shapeRange"]) if isinstance(item["shapeRange"], str) else item["shapeRange"]
        shape = tuple(int(b[0]) for b in bounds)
        max_shape = tuple(int(b[1]) for b in bounds)
    return Tensor(str(item.get("name", "")), shape, _DTYPES.get(dtype, dtype.lower()), max_shape)


def read_spec(path: Path) -> PackageSpec:
    """Inputs and outputs of one package, without loading it for prediction (works on every platform)."""
    if path.suffix.lower() == ".mlmodelc":
        metadata = path / "metadata.json"
        if not metadata.is_file():
            raise ModelFolderError(f"{path}: compiled model without metadata.json; recompile it with Xcode 13 or later")
        data = json.loads(metadata.read_text(encoding="utf-8"))
        entry = data[0] if isinstance(data, list) else data
        inputs = tuple(_from_metadata(item) for item in entry.get("inputSchema", []))
        outputs = tuple(_from_metadata(item) for item in entry.get("outputSchema", []))
        return PackageSpec(path, inputs, outputs)
    import coremltools as ct

    try:
        spec = ct.utils.load_spec(str(path))
    except Exception as error:  # coremltools raises plain exceptions for broken packages
        raise ModelFolderError(f"{path}: not a readable Core ML package: {error}") from error
    description = spec.description
    bad = [f.name for f in [*description.input, *description.output] if f.type.WhichOneof("Type") != "multiArrayType"]
    if bad:
        raise ModelFolderError(f"{path}: inputs and outputs must be multi-arrays; these are not: {', '.join(bad)}")
    outputs = tuple(_from_proto(f) for f in description.output)
    if spec.WhichOneof("Type") == "mlProgram":
        outputs = tuple(_program_shape(spec.mlProgram, t) if not t.shape else t for t in outputs)
    return PackageSpec(path, tuple(_from_proto(f) for f in description.input), outputs)


def _program_shape(program: object, tensor: Tensor) -> Tensor:
    """An output whose shape depends on a flexible input has none in the model description: read it from the
    ML program (-1 for a dimension known only at run time)."""
    for function in program.functions.values():  # type: ignore[attr-defined]
        block = function.block_specializations[function.opset]
        for operation in block.operations:
            for value in operation.outputs:
                if value.name == tensor.name and value.type.WhichOneof("type") == "tensorType":
                    dims = value.type.tensorType.dimensions
                    shape = tuple(d.constant.size if d.WhichOneof("dimension") == "constant" else -1 for d in dims)
                    return Tensor(tensor.name, shape, tensor.dtype, tensor.max_shape)
    return tensor


def _shape(tensor: Tensor) -> str:
    return "(" + ", ".join(str(d) for d in tensor.shape) + ")"


def load_folder(path: str | Path) -> ModelFolder:
    """Find, read and cross-check the encoder, the decoder and the tokenizer of a model folder."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelFolderError(f"model folder '{folder}' does not exist")
    tokenizer_path = folder / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise ModelFolderError(
            f"{folder}: tokenizer.json is missing; copy Whisper's tokenizer.json (the one that matches the model) "
            "into the model folder"
        )
    try:
        tokenizer = WhisperTokenizer(tokenizer_path)
    except TokenizerError as error:
        raise ModelFolderError(str(error)) from error
    encoder = read_spec(find_package(folder, "encoder"))
    decoder = read_spec(find_package(folder, "decoder"))

    if len(encoder.inputs) != 1 or len(encoder.outputs) != 1:
        raise ModelFolderError(
            f"{encoder.path}: the encoder must have one input (log-mel) and one output (audio features); it has "
            f"{len(encoder.inputs)} input(s) and {len(encoder.outputs)} output(s)"
        )
    mel, features = encoder.inputs[0], encoder.outputs[0]
    if len(mel.shape) != 3 or mel.shape[0] != 1 or mel.shape[1] not in (80, 128) or mel.shape[2] < 2:
        raise ModelFolderError(
            f"{encoder.path}: input '{mel.name}' has shape {_shape(mel)}; expected (1, 80 or 128, frames) log-mel "
            "features, such as (1, 80, 3000) for 30 s windows"
        )
    if mel.shape[2] > 3000:
        raise ModelFolderError(f"{encoder.path}: input '{mel.name}' takes {mel.shape[2]} frames; at most 3000 (30 s)")
    if len(features.shape) != 3 or features.shape[0] != 1 or mel.shape[2] % features.shape[1]:
        raise ModelFolderError(
            f"{encoder.path}: output '{features.name}' has shape {_shape(features)}; expected (1, n_audio_ctx, "
            f"n_state) with n_audio_ctx dividing the {mel.shape[2]} input frames"
        )

    ints = [t for t in decoder.inputs if t.dtype == "int32"]
    floats = [t for t in decoder.inputs if t.dtype != "int32"]
    if len(ints) != 1 or len(floats) != 1 or len(decoder.outputs) != 1:
        raise ModelFolderError(
            f"{decoder.path}: the decoder must take token ids (int32) and audio features and give logits; it has "
            f"inputs {', '.join(f'{t.name} {t.dtype}' for t in decoder.inputs) or 'none'} and "
            f"{len(decoder.outputs)} output(s)"
        )
    tokens, audio, logits = ints[0], floats[0], decoder.outputs[0]
    if audio.shape != features.shape:
        raise ModelFolderError(
            f"{decoder.path}: input '{audio.name}' has shape {_shape(audio)} but the encoder gives "
            f"{_shape(features)}; the encoder and decoder must come from the same model"
        )
    if len(tokens.shape) != 2 or tokens.shape[0] != 1:
        raise ModelFolderError(
            f"{decoder.path}: input '{tokens.name}' has shape {_shape(tokens)}; expected (1, n_tokens)"
        )
    fixed = tokens.max_shape is None
    max_tokens = tokens.shape[1] if fixed else tokens.max_shape[1]  # type: ignore[index]
    if max_tokens < 0:
        max_tokens = 448
    if len(logits.shape) != 3 or logits.shape[0] != 1:
        raise ModelFolderError(
            f"{decoder.path}: output '{logits.name}' has shape {_shape(logits)}; expected (1, n_tokens, n_vocab)"
        )
    n_vocab = logits.shape[2]
    window = mel.shape[2] * HOP_LENGTH / SAMPLE_RATE
    needed = tokenizer.timestamp_begin + int(round(window / TIME_PRECISION)) + 1
    if n_vocab < needed:
        raise ModelFolderError(
            f"{decoder.path}: output '{logits.name}' has {n_vocab} logits per token but the tokenizer's vocabulary "
            f"with {window:g} s of timestamps needs {needed}; is tokenizer.json from the same model?"
        )
    if max_tokens < 8:
        raise ModelFolderError(f"{decoder.path}: input '{tokens.name}' takes only {max_tokens} tokens")
    return ModelFolder(
        path=folder,
        encoder=encoder,
        decoder=decoder,
        tokenizer=tokenizer,
        n_mels=mel.shape[1],
        n_frames=mel.shape[2],
        n_audio_ctx=features.shape[1],
        n_state=features.shape[2],
        n_vocab=n_vocab,
        max_tokens=max_tokens,
        fixed_tokens=fixed,
        mel_input=mel.name,
        features_output=features.name,
        tokens_input=tokens.name,
        features_input=audio.name,
        logits_output=logits.name,
    )
