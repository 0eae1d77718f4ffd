"""Tiny random MLX models built offline, for tests and benchmarks.

:func:`build_text_model` writes a folder that ``mlx_lm.load`` (and so ``provider = "mlx"``) serves: a llama
``config.json``, random weights saved by MLX as safetensors, and a byte-level BPE tokenizer trained with
``tokenizers`` on a small built-in corpus, with a ChatML ``chat_template`` that honours ``enable_thinking``.
The weights are random, so the text is noise; what tests check is structure and determinism.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A cat sat on the mat and looked at the bird in the tree.",
    "Hello, how are you today? I am fine, thank you for asking.",
    "Paris is the capital of France. Berlin is the capital of Germany.",
    "One two three four five six seven eight nine ten.",
    "Machine learning models turn text into tokens and tokens into text.",
    "The weather is sunny with a light wind from the west.",
    "def add(a, b):\n    return a + b\n",
    '{"name": "value", "list": [1, 2, 3]}',
]

# Sizes: "tiny" is about 93k parameters, "small" about 25M (the benchmark targets in the design).
SIZES: dict[str, dict[str, int]] = {
    "tiny": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "intermediate_size": 112,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 1024,
    },
    "small": {
        "hidden_size": 512,
        "num_hidden_layers": 8,
        "intermediate_size": 1536,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "vocab_size": 1024,
    },
}


def build_tokenizer(folder: Path, vocab_size: int) -> None:
    """Train a byte-level BPE tokenizer and write ``tokenizer.json`` and ``tokenizer_config.json``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "model_max_length": 2048,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def build_text_model(folder: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random llama model with ``size`` (a key of :data:`SIZES`) to ``folder``; returns the folder."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dims = SIZES[size]
    build_tokenizer(folder, dims["vocab_size"])
    vocab = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    vocab_size = len(vocab["model"]["vocab"]) + len(
        [t for t in vocab["added_tokens"] if t["content"] not in vocab["model"]["vocab"]]
    )
    eos_id = next(t["id"] for t in vocab["added_tokens"] if t["content"] == "<|im_end|>")
    config: dict[str, Any] = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        **dims,
        "vocab_size": vocab_size,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": True,
        "eos_token_id": eos_id,
        "torch_dtype": "float32",
    }
    mx.random.seed(seed)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    # Wider random weights than the default init, so greedy decoding does not collapse to one token.
    weights = {name: value * 2.0 if value.ndim > 1 else value for name, value in tree_flatten(model.parameters())}
    mx.save_safetensors(str(folder / "model.safetensors"), weights)
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder


def parameter_count(folder: str | Path) -> int:
    import mlx.core as mx

    weights = mx.load(str(Path(folder) / "model.safetensors"))
    return sum(int(v.size) for v in weights.values())
