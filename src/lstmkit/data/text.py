"""Text into token ids: normalisation, word / character / sentencepiece tokenizers, a Vocab.

Every tokenizer is fitted on the training split only and saved as JSON (the sentencepiece
model as its own file beside it), so that a saved run encodes new text exactly as it did in
training. Tokens never seen in training map to ``<unk>``; the share of them is reported.

Example:
    >>> tok = WordTokenizer()
    >>> tok.tokenize("Loving @united's new seats!! http://t.co/x")
    ['loving', '<user>', 'new', 'seats', '!', '!', '<url>']
    >>> vocab = Vocab.build([tok.tokenize("a b b"), tok.tokenize("b c")], min_freq=2)
    >>> vocab.tokens
    ['<pad>', '<unk>', 'b']
    >>> vocab.encode(["b", "zebra"])
    [2, 1]
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

from ..errors import DataError

__all__ = ["PAD", "TOKENIZERS", "UNK", "CharTokenizer", "SentencePieceTokenizer", "Vocab",
           "WordTokenizer", "make_tokenizer", "normalize", "tokenizer_from_dict"]

PAD, UNK = "<pad>", "<unk>"
_URL = re.compile(r"(?:https?://|www\.)\S+")
_USER = re.compile(r"@\w+(?:'s)?")
_WORD = re.compile(r"<url>|<user>|[^\W_]+(?:'[^\W_]+)?|[^\w\s]", re.UNICODE)


def normalize(text: str) -> str:
    """NFKC, lower case, URLs -> ``<url>``, @mentions -> ``<user>``, whitespace squeezed."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _URL.sub(" <url> ", text)
    text = _USER.sub(" <user> ", text)
    return " ".join(text.split())


class _RuleTokenizer:
    """A tokenizer by fixed rules: nothing to fit, nothing to save but its kind."""

    kind = ""

    def fit(self, texts: Iterable[str]) -> _RuleTokenizer:
        return self

    def to_dict(self) -> dict:
        return {"kind": self.kind}


class WordTokenizer(_RuleTokenizer):
    """Words of the normalised text; punctuation and emoji are tokens of their own."""

    kind = "word"

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(normalize(text))


class CharTokenizer(_RuleTokenizer):
    """Characters of the normalised text (spaces included)."""

    kind = "char"

    def tokenize(self, text: str) -> list[str]:
        return list(normalize(text))


class SentencePieceTokenizer:
    """Subwords from a sentencepiece unigram model trained on the training texts only."""

    kind = "sentencepiece"
    model_file = "sentencepiece.model"

    def __init__(self, vocab_size: int = 8000, model: bytes | None = None) -> None:
        self.vocab_size = vocab_size
        self.model = model
        self._processor = None if model is None else self._load(model)

    @staticmethod
    def _load(model: bytes):
        import sentencepiece as spm

        return spm.SentencePieceProcessor(model_proto=model)

    def fit(self, texts: Iterable[str]) -> SentencePieceTokenizer:
        import sentencepiece as spm

        lines = [normalize(t) for t in texts]
        buffer = io.BytesIO()
        # hard_vocab_limit=False: a small corpus gets a smaller vocabulary, not an error.
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(lines), model_writer=buffer, vocab_size=self.vocab_size,
                model_type="unigram", character_coverage=0.9995, hard_vocab_limit=False,
                bos_id=-1, eos_id=-1, unk_id=0, pad_id=-1, num_threads=1, minloglevel=2,
                user_defined_symbols=["<url>", "<user>"])
        except RuntimeError as error:  # e.g. fewer pieces asked for than distinct characters
            raise DataError(f"sentencepiece cannot train a vocabulary of {self.vocab_size} on "
                            f"these texts ({str(error).strip().splitlines()[-1]}); raise "
                            "vocab_size (--vocab-size).") from error
        self.model = buffer.getvalue()
        self._processor = self._load(self.model)
        return self

    def tokenize(self, text: str) -> list[str]:
        if self._processor is None:
            raise RuntimeError("SentencePieceTokenizer is not fitted: call fit() first.")
        return self._processor.encode(normalize(text), out_type=str)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "vocab_size": self.vocab_size, "model_file": self.model_file}


TOKENIZERS = ("word", "char", "sentencepiece")


def make_tokenizer(kind: str, vocab_size: int = 8000):
    """A fresh tokenizer of ``kind`` (one of TOKENIZERS)."""
    if kind == "word":
        return WordTokenizer()
    if kind == "char":
        return CharTokenizer()
    if kind == "sentencepiece":
        return SentencePieceTokenizer(vocab_size)
    raise ValueError(f"tokenizer={kind!r}: choose one of {', '.join(TOKENIZERS)}.")


def tokenizer_from_dict(data: dict, files: dict[str, bytes]):
    """The tokenizer saved by ``to_dict`` (the sentencepiece model read from ``files``)."""
    kind = data["kind"]
    if kind == "sentencepiece":
        return SentencePieceTokenizer(int(data["vocab_size"]), files[data["model_file"]])
    return make_tokenizer(kind)


class Vocab:
    """Token <-> id, with ``<pad>`` = 0 and ``<unk>`` = 1; most frequent tokens first."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if list(tokens[:2]) != [PAD, UNK]:
            raise ValueError(f"a Vocab starts with {PAD!r}, {UNK!r}; got {list(tokens[:2])}.")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a Vocab's tokens must be distinct.")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], min_freq: int = 1,
              max_size: int | None = None) -> Vocab:
        """From tokenized training texts: tokens seen ``min_freq`` times, at most ``max_size``
        of them (pad and unk included), most frequent first, ties in first-seen order."""
        counts = Counter(t for tokens in token_lists for t in tokens)
        kept = [t for t, n in counts.most_common() if n >= min_freq and t not in (PAD, UNK)]
        if max_size is not None:
            kept = kept[:max(max_size - 2, 0)]
        return cls([PAD, UNK, *kept])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.index.get(t, 1) for t in tokens]

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.tokens[i] for i in ids]

    def to_dict(self) -> dict:
        return {"tokens": self.tokens}

    @classmethod
    def from_dict(cls, data: dict) -> Vocab:
        return cls(list(data["tokens"]))
