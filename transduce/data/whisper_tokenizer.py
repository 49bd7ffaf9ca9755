"""Whisper's byte-level BPE, read from its ``tokenizer.json`` by the ``tokenizers`` library.

transduce reserves ``pad=0, unk=1, bos=2, eos=3`` in every vocabulary. Whisper has
no pad or unk and puts ``<|endoftext|>`` (eos) and ``<|startoftranscript|>`` (bos)
at 50257/50258, so this tokenizer renumbers by four swaps:

    0 <-> <|startoflm|>    1 <-> <|startofprev|>    2 <-> <|startoftranscript|>
    3 <-> <|endoftext|>

(``<|startoflm|>`` and ``<|startofprev|>`` are never generated: they are suppressed.)
The permutation is its own inverse; :mod:`transduce.convert.whisper` permutes the
embedding rows the same way, so the model computes exactly what Whisper computes.

Saved as one JSON file ``<prefix>.whisper.json``: ``{"tokenizer": <Whisper's
tokenizer.json>, "prompt": [...], "suppress_ids": [...], "suppress_ids_begin": [...]}``
(ids there in Whisper's own numbering).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from transduce.config import TransduceError
from transduce.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer

SWAPS = {
    PAD_ID: "<|startoflm|>",
    UNK_ID: "<|startofprev|>",
    BOS_ID: "<|startoftranscript|>",
    EOS_ID: "<|endoftext|>",
}
DEFAULT_PROMPT = ["<|en|>", "<|transcribe|>", "<|notimestamps|>"]


class WhisperTokenizer(Tokenizer):
    """Whisper's tokenizer in transduce's id numbering (see the module docstring).

    ``prompt_ids``: the forced decoder prefix after bos (``<|en|><|transcribe|>
    <|notimestamps|>``); ``suppress_ids``: never generated; ``suppress_begin_ids``:
    not generated as the first token after the prompt (blank and eos).
    """

    kind = "whisper"
    suffix = ".whisper.json"

    def __init__(self, tokenizer_json: str, meta: dict) -> None:
        try:
            from tokenizers import Tokenizer as HFTokenizer
        except ImportError:
            raise TransduceError(
                "Whisper models need the tokenizers library: pip install tokenizers"
            ) from None
        self.tokenizer_json = tokenizer_json
        self.meta = dict(meta)
        self.hf = HFTokenizer.from_str(tokenizer_json)
        self._size = self.hf.get_vocab_size(with_added_tokens=True)
        self.perm = list(range(self._size))
        for ours, token in SWAPS.items():
            theirs = self.hf.token_to_id(token)
            if theirs is None:
                raise TransduceError(f"the Whisper tokenizer has no {token} token")
            self.perm[ours], self.perm[theirs] = theirs, ours
        # Every added token (<|endoftext|> and above) is special: none is text.
        self.first_special = self.hf.token_to_id("<|endoftext|>")

    # numbering -------------------------------------------------------------------
    def to_model(self, whisper_ids: Iterable[int]) -> list[int]:
        """Whisper's ids -> transduce's (the permutation is its own inverse)."""
        return [self.perm[i] for i in whisper_ids]

    to_whisper = to_model

    def token_id(self, token: str) -> int:
        i = self.hf.token_to_id(token)
        if i is None:
            raise TransduceError(f"the Whisper tokenizer has no {token} token")
        return self.perm[i]

    @property
    def prompt_ids(self) -> list[int]:
        return [self.token_id(t) for t in self.meta.get("prompt", DEFAULT_PROMPT)]

    @property
    def suppress_ids(self) -> list[int]:
        return self.to_model(self.meta.get("suppress_ids", []))

    @property
    def suppress_begin_ids(self) -> list[int]:
        return self.to_model(self.meta.get("suppress_ids_begin", []))

    # Tokenizer interface ---------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._size

    def encode(self, text: str) -> list[int]:
        """Text -> ids, with Whisper's leading space before the first word."""
        text = " " + text.strip()
        return self.to_model(self.hf.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Iterable[int]) -> str:
        theirs = [self.perm[i] for i in ids if 0 <= i < self._size]
        return self.hf.decode([i for i in theirs if i < self.first_special]).strip()

    def tokens(self, text: str) -> list[str]:
        return self.hf.encode(" " + text.strip(), add_special_tokens=False).tokens

    def save(self, directory: str | Path, prefix: str) -> str:
        name = prefix + self.suffix
        data = {"tokenizer": json.loads(self.tokenizer_json), **self.meta}
        (Path(directory) / name).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        return name

    @classmethod
    def load(cls, path: str | Path) -> WhisperTokenizer:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            tokenizer = data.pop("tokenizer")
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise TransduceError(f"cannot read the Whisper tokenizer {path}: {e}") from None
        return cls(json.dumps(tokenizer), data)


__all__ = ["DEFAULT_PROMPT", "SWAPS", "WhisperTokenizer"]
