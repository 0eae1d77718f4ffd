"""The Whisper tokenizer from the model folder's ``tokenizer.json`` (Hugging Face ``tokenizers``; no hub access).

Special tokens are found by their text, so any Whisper vocabulary works: English-only (``<|en|>`` is its only
language) or multilingual. Timestamp tokens are not in ``tokenizer.json``: as in every Whisper model they follow
``<|notimestamps|>``, one per 0.02 s.
"""

from __future__ import annotations

import re
from pathlib import Path

from tokenizers import Tokenizer

LANGUAGE_TOKEN = re.compile(r"^<\|([a-z]{2,3}|haw|yue)\|>$")
REQUIRED = ("<|endoftext|>", "<|startoftranscript|>", "<|transcribe|>", "<|notimestamps|>")


class TokenizerError(ValueError):
    """tokenizer.json is missing or is not a Whisper tokenizer."""


class WhisperTokenizer:
    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise TokenizerError(f"{path} not found: the model folder must hold Whisper's tokenizer.json")
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # tokenizers raises a bare Exception for unreadable files
            raise TokenizerError(f"{path} is not a readable tokenizer.json: {error}") from error
        missing = [token for token in REQUIRED if self.tokenizer.token_to_id(token) is None]
        if missing:
            raise TokenizerError(f"{path} is not a Whisper tokenizer: it lacks {', '.join(missing)}")
        ids = self.tokenizer.token_to_id
        self.eot: int = ids("<|endoftext|>")
        self.sot: int = ids("<|startoftranscript|>")
        self.transcribe: int = ids("<|transcribe|>")
        self.translate: int | None = ids("<|translate|>")
        self.sot_prev: int | None = ids("<|startofprev|>")
        self.no_speech: int | None = ids("<|nospeech|>") if ids("<|nospeech|>") is not None else ids("<|nocaptions|>")
        self.no_timestamps: int = ids("<|notimestamps|>")
        self.timestamp_begin: int = self.no_timestamps + 1
        self.languages: dict[str, int] = {}
        for token, index in self.tokenizer.get_vocab(with_added_tokens=True).items():
            match = LANGUAGE_TOKEN.match(token)
            if match and self.sot < index < self.timestamp_begin:
                self.languages[match.group(1)] = index

    @property
    def multilingual(self) -> bool:
        return len(self.languages) > 1

    def sot_sequence(self, language: str | None, task: str) -> list[int]:
        """``<|startoftranscript|>`` then, for multilingual models, the language and the task."""
        sequence = [self.sot]
        if self.multilingual:
            sequence.append(self.languages[language or "en"])
            sequence.append(self.translate if task == "translate" and self.translate is not None else self.transcribe)
        return sequence

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, tokens: list[int]) -> str:
        """The text of ``tokens``; special and timestamp tokens are left out."""
        return self.tokenizer.decode([t for t in tokens if t < self.eot], skip_special_tokens=True)
