"""Tokenizers: SentencePiece subwords, words and characters, with shared special ids.

Every tokenizer uses ``pad=0, unk=1, bos=2, eos=3``. ``encode`` adds no bos/eos;
``decode`` drops pad/bos/eos and renders unknown ids as ``⁇``. A trained pair of
tokenizers is saved in a folder as model file(s) plus ``tokenizer.json``::

    {"type": "sentencepiece", "shared": true, "src": "shared.spm.model", "tgt": "shared.spm.model"}
"""

from __future__ import annotations

import io
import json
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm

from transduce.config import TokenizerConfig, TransduceError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
UNK_SURFACE = "⁇"
_DROP_ON_DECODE = {PAD_ID, BOS_ID, EOS_ID}


class Tokenizer:
    """Interface: text <-> ids. Subclasses set ``kind`` and ``suffix`` (file name ending)."""

    kind = ""
    suffix = ""

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Text -> ids, without bos/eos."""
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text; pad/bos/eos are ignored."""
        raise NotImplementedError

    def tokens(self, text: str) -> list[str]:
        """Text -> pieces, for display."""
        raise NotImplementedError

    def save(self, directory: str | Path, prefix: str) -> str:
        """Write ``<directory>/<prefix><suffix>``; returns the file name."""
        raise NotImplementedError

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        raise NotImplementedError


def _sample(texts: Sequence[str], limit: int) -> list[str]:
    """At most ``limit`` non-empty texts, a seeded random subset when there are more."""
    texts = [t for t in texts if t.strip()]
    if limit and len(texts) > limit:
        texts = random.Random(0).sample(texts, limit)
    return texts


class SentencePieceTokenizer(Tokenizer):
    """Subword tokenizer backed by the sentencepiece library (unigram or BPE)."""

    kind = "sentencepiece"
    suffix = ".spm.model"

    def __init__(self, model_proto: bytes):
        self.model_proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)

    @classmethod
    def train(
        cls,
        texts: Sequence[str],
        vocab_size: int = 8000,
        model_type: str = "unigram",
        character_coverage: float = 1.0,
        max_sentences: int = 200_000,
    ) -> SentencePieceTokenizer:
        """Train in memory on ``texts``. ``vocab_size`` is a soft limit, so tiny data works."""
        if model_type not in ("unigram", "bpe"):
            raise TransduceError(
                f"tokenizer.model_type '{model_type}' is not supported; use unigram or bpe"
            )
        sentences = _sample(texts, max_sentences)
        if not sentences:
            raise TransduceError("cannot train a SentencePiece tokenizer on no text")
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences),
                model_writer=model,
                vocab_size=vocab_size,
                hard_vocab_limit=False,  # a small corpus gets a smaller vocabulary, not a crash
                model_type=model_type,
                character_coverage=character_coverage,
                pad_id=PAD_ID,
                unk_id=UNK_ID,
                bos_id=BOS_ID,
                eos_id=EOS_ID,
                # identity: decode(encode(x)) == x; NFKC would turn "…" into "..." and
                # make detokenized output differ from references.
                normalization_rule_name="identity",
                # characters never seen in training (emoji, CJK, NBSP) become UTF-8 byte
                # pieces instead of <unk>, and runs of spaces are kept: decode(encode(x)) == x
                byte_fallback=True,
                remove_extra_whitespaces=False,
                max_sentence_length=1 << 16,
                shuffle_input_sentence=True,
                num_threads=4,
                minloglevel=2,
            )
        except RuntimeError as e:
            raise TransduceError(
                f"SentencePiece training failed: {e}; try a different tokenizer.vocab_size"
            ) from None
        return cls(model.getvalue())

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text, out_type=int)

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([int(i) for i in ids if int(i) not in _DROP_ON_DECODE])

    def tokens(self, text: str) -> list[str]:
        return self.sp.encode(text, out_type=str)

    def tokens_of(self, ids: Iterable[int]) -> list[str]:
        """Ids -> their pieces, for display."""
        return [self.sp.id_to_piece(int(i)) for i in ids]

    def save(self, directory: str | Path, prefix: str) -> str:
        name = f"{prefix}{self.suffix}"
        Path(directory, name).write_bytes(self.model_proto)
        return name

    @classmethod
    def load(cls, path: str | Path) -> SentencePieceTokenizer:
        path = Path(path)
        try:
            return cls(path.read_bytes())
        except OSError as e:
            raise TransduceError(f"cannot read tokenizer file {path}: {e.strerror or e}") from None
        except RuntimeError:
            raise TransduceError(f"{path} is not a valid SentencePiece model") from None


# A word: letters/digits joined by - . + ' _ / (package names such as "libfoo-dev",
# "python3.11", "g++" stay whole); the paragraph separator; any other single symbol.
_WORD_RE = re.compile(r"<p>|\w+(?:[-.+'_/]\w+)*\+*|[^\w\s]")
_NO_SPACE_BEFORE = re.compile(r" ([.,;:!?%)\]}])")
_NO_SPACE_AFTER = re.compile(r"([(\[{]) ")


def split_words(text: str) -> list[str]:
    """``"Foo: a C++ tool."`` -> ``["Foo", ":", "a", "C++", "tool", "."]`` (case kept)."""
    return _WORD_RE.findall(text)


def join_words(words: Iterable[str]) -> str:
    """Inverse of :func:`split_words` up to spacing: no space before ``.,;:!?)`` etc."""
    text = " ".join(words)
    return _NO_SPACE_AFTER.sub(r"\1", _NO_SPACE_BEFORE.sub(r"\1", text))


class VocabularyTokenizer(Tokenizer):
    """A tokenizer over a list of units (characters or words) learned from training text.

    Subclasses say how text splits into units (:meth:`split`) and how units join back
    (:meth:`join`); ids are ``len(SPECIALS) + position in the list``.
    """

    field = "units"  # the key of the unit list in the saved JSON
    description = "vocabulary"

    def __init__(self, units: Sequence[str]):
        self.units = list(units)
        self.index = {u: i + len(SPECIALS) for i, u in enumerate(self.units)}

    def split(self, text: str) -> list[str]:
        raise NotImplementedError

    def join(self, units: list[str]) -> str:
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + len(self.units)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(u, UNK_ID) for u in self.split(text)]

    def decode(self, ids: Iterable[int], oovs: Sequence[str] = ()) -> str:
        """Ids -> text; ids past the vocabulary are this example's ``oovs`` (copy models)."""
        out = []
        for i in ids:
            i = int(i)
            if i in _DROP_ON_DECODE:
                continue
            j = i - len(SPECIALS)
            if 0 <= j < len(self.units):
                out.append(self.units[j])
            elif 0 <= i - self.vocab_size < len(oovs):
                out.append(oovs[i - self.vocab_size])
            else:
                out.append(UNK_SURFACE)
        return self.join(out)

    def tokens(self, text: str) -> list[str]:
        return [u if u in self.index else SPECIALS[UNK_ID] for u in self.split(text)]

    def save(self, directory: str | Path, prefix: str) -> str:
        name = f"{prefix}{self.suffix}"
        data = {"specials": list(SPECIALS), self.field: self.units}
        Path(directory, name).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        return name

    @classmethod
    def load(cls, path: str | Path) -> VocabularyTokenizer:
        path = Path(path)
        try:
            units = json.loads(path.read_text(encoding="utf-8"))[cls.field]
            if not isinstance(units, list) or not all(isinstance(u, str) for u in units):
                raise ValueError(f"'{cls.field}' must be a list of strings")
        except OSError as e:
            raise TransduceError(f"cannot read tokenizer file {path}: {e.strerror or e}") from None
        except (ValueError, KeyError, TypeError) as e:
            raise TransduceError(f"{path} is not a valid {cls.description}: {e}") from None
        return cls(units)


class CharTokenizer(VocabularyTokenizer):
    """One token per Unicode code point; the vocabulary is built from training text."""

    kind = "char"
    suffix = ".chars.json"
    field = "chars"
    description = "character vocabulary"

    @property
    def chars(self) -> list[str]:
        return self.units

    @classmethod
    def train(cls, texts: Iterable[str], character_coverage: float = 1.0) -> CharTokenizer:
        """Most frequent characters first, keeping those that cover ``character_coverage``."""
        counts = Counter()
        for text in texts:
            counts.update(text)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        total, kept, covered = sum(counts.values()), [], 0
        for char, n in ranked:
            if kept and covered >= character_coverage * total:
                break
            kept.append(char)
            covered += n
        return cls(kept)

    def split(self, text: str) -> list[str]:
        return list(text)

    def join(self, units: list[str]) -> str:
        return "".join(units)


class WordTokenizer(VocabularyTokenizer):
    """Whole words (see :func:`split_words`), the ``vocab_size`` most frequent in training.

    Besides plain ``encode`` (unknown words -> ``<unk>``) it gives *extended ids* for
    copy models: :meth:`encode_extended` numbers an example's out-of-vocabulary
    source words ``V, V + 1, ...`` in order of first occurrence, :meth:`encode_target`
    gives a target OOV word the id of the same source word (else ``<unk>``), and
    :meth:`decode` with that example's ``oovs`` turns such ids back into the words.
    """

    kind = "word"
    suffix = ".words.json"
    field = "words"
    description = "word vocabulary"

    @property
    def words(self) -> list[str]:
        return self.units

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 30000) -> WordTokenizer:
        """Most frequent words first (ties alphabetical), at most ``vocab_size`` ids in all."""
        counts: Counter = Counter()
        for text in texts:
            counts.update(split_words(text))
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls([w for w, _ in ranked[: max(vocab_size - len(SPECIALS), 0)]])

    def split(self, text: str) -> list[str]:
        return split_words(text)

    def join(self, units: list[str]) -> str:
        return join_words(units)

    def encode_extended(self, text: str, max_len: int | None = None) -> tuple[list[int], list[str]]:
        """Source text -> (ids with OOV words as ``V + k``, the OOV words in that order).

        ``max_len`` truncates first, so the OOVs are those of the truncated source.
        """
        ids, oovs, slot = [], [], {}
        for w in split_words(text)[:max_len]:
            i = self.index.get(w)
            if i is None:
                if w not in slot:
                    slot[w] = self.vocab_size + len(oovs)
                    oovs.append(w)
                i = slot[w]
            ids.append(i)
        return ids, oovs

    def encode_target(self, text: str, oovs: Sequence[str]) -> list[int]:
        """Target text -> ids; an OOV word found in ``oovs`` gets its extended id."""
        slot = {w: self.vocab_size + k for k, w in enumerate(oovs)}
        return [self.index.get(w, slot.get(w, UNK_ID)) for w in split_words(text)]


TOKENIZERS: dict[str, type[Tokenizer]] = {
    "sentencepiece": SentencePieceTokenizer,
    "char": CharTokenizer,
    "word": WordTokenizer,
}


def _register_whisper() -> None:
    # Imported late: whisper_tokenizer builds on the base class defined above.
    from transduce.data.whisper_tokenizer import WhisperTokenizer

    TOKENIZERS[WhisperTokenizer.kind] = WhisperTokenizer


def train_tokenizer(cfg: TokenizerConfig, texts: Sequence[str]) -> Tokenizer:
    """Train one tokenizer of ``cfg.type`` on ``texts``."""
    if cfg.type == "sentencepiece":
        return SentencePieceTokenizer.train(
            texts,
            vocab_size=cfg.vocab_size,
            model_type=cfg.model_type,
            character_coverage=cfg.character_coverage,
            max_sentences=cfg.max_train_sentences,
        )
    if cfg.type == "char":
        return CharTokenizer.train(texts, character_coverage=cfg.character_coverage)
    if cfg.type == "word":
        return WordTokenizer.train(texts, vocab_size=cfg.vocab_size)
    if cfg.type == "whisper":
        raise TransduceError(
            "tokenizer.type 'whisper' cannot be trained: import a Whisper model "
            "(transduce import whisper) and fine-tune it with model.init_from: DIR"
        )
    raise TransduceError(
        f"tokenizer.type '{cfg.type}' is unknown; choose one of: {', '.join(TOKENIZERS)}"
    )


def build_tokenizers(
    cfg: TokenizerConfig, src_texts: Sequence[str], tgt_texts: Sequence[str]
) -> tuple[Tokenizer, Tokenizer]:
    """Train (src, tgt) tokenizers; with ``cfg.shared`` one tokenizer is returned twice."""
    if cfg.shared:
        tok = train_tokenizer(cfg, list(src_texts) + list(tgt_texts))
        return tok, tok
    return train_tokenizer(cfg, src_texts), train_tokenizer(cfg, tgt_texts)


def save_tokenizers(
    directory: str | Path, src_tok: Tokenizer, tgt_tok: Tokenizer, shared: bool
) -> None:
    """Write the model file(s) and ``tokenizer.json`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if shared:
        src_file = tgt_file = src_tok.save(directory, "shared")
    else:
        src_file, tgt_file = src_tok.save(directory, "src"), tgt_tok.save(directory, "tgt")
    meta = {
        "type": src_tok.kind,
        "src_type": src_tok.kind,
        "tgt_type": tgt_tok.kind,
        "shared": shared,
        "src": src_file,
        "tgt": tgt_file,
        "special_ids": {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID},
    }
    (directory / "tokenizer.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load_tokenizers(directory: str | Path) -> tuple[Tokenizer, Tokenizer]:
    """Load the (src, tgt) tokenizers that :func:`save_tokenizers` wrote."""
    directory = Path(directory)
    meta_path = directory / "tokenizer.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        kinds = (meta.get("src_type", meta["type"]), meta.get("tgt_type", meta["type"]))
        files = (meta["src"], meta["tgt"])
    except OSError as e:
        raise TransduceError(f"cannot read {meta_path}: {e.strerror or e}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise TransduceError(f"{meta_path} is corrupt ({e}); re-save the tokenizers") from None
    if "whisper" in kinds:
        _register_whisper()
    for kind in kinds:
        if kind not in TOKENIZERS:
            raise TransduceError(f"{meta_path}: unknown tokenizer type '{kind}'")
    src = TOKENIZERS[kinds[0]].load(directory / files[0])
    if meta.get("shared") or files[0] == files[1]:
        return src, src
    return src, TOKENIZERS[kinds[1]].load(directory / files[1])
