"""Tokenizers and the Vocab: normalisation, fitting on training text only, JSON round trips."""

from __future__ import annotations

import pytest

from lstmkit.data.text import (
    CharTokenizer,
    SentencePieceTokenizer,
    Vocab,
    WordTokenizer,
    make_tokenizer,
    normalize,
    tokenizer_from_dict,
)

CORPUS = ["the flight was great, thanks @delta!", "worst service ever :( http://t.co/abc",
          "my bag arrived on time", "the crew was lovely and the seats were great"] * 30


def test_normalize_lowercases_and_replaces_urls_and_mentions():
    assert normalize("  Hello\tWORLD  @Bob's https://x.y/z ") == "hello world <user> <url>"


def test_word_tokenizer_splits_punctuation_and_keeps_contractions():
    assert WordTokenizer().tokenize("Don't stop!! ok") == ["don't", "stop", "!", "!", "ok"]


def test_char_tokenizer_reads_the_normalised_text():
    assert CharTokenizer().tokenize("Ab  C") == ["a", "b", " ", "c"]


def test_sentencepiece_round_trips_through_its_saved_form():
    tok = SentencePieceTokenizer(vocab_size=120).fit(CORPUS)
    pieces = tok.tokenize("the crew was great @someone")
    assert "<user>" in pieces and len(pieces) >= 4
    again = tokenizer_from_dict(tok.to_dict(), {tok.model_file: tok.model})
    assert again.tokenize("the crew was great @someone") == pieces


def test_sentencepiece_must_be_fitted_before_use():
    with pytest.raises(RuntimeError, match="not fitted"):
        SentencePieceTokenizer(50).tokenize("hello")


def test_unknown_tokenizer_is_named():
    with pytest.raises(ValueError, match="tokenizer='bpe'"):
        make_tokenizer("bpe")


def test_vocab_keeps_frequent_tokens_and_maps_the_rest_to_unk():
    lists = [["a", "b", "b", "c"], ["b", "c", "d"]]
    vocab = Vocab.build(lists, min_freq=2)
    assert vocab.tokens == ["<pad>", "<unk>", "b", "c"]
    assert vocab.encode(["c", "a", "zzz"]) == [3, 1, 1]
    assert Vocab.build(lists, max_size=3).tokens == ["<pad>", "<unk>", "b"]
    assert Vocab.from_dict(vocab.to_dict()).tokens == vocab.tokens
    assert vocab.decode([2, 3]) == ["b", "c"]


def test_vocab_rejects_a_corrupt_token_list():
    with pytest.raises(ValueError, match="starts with"):
        Vocab(["a", "<pad>", "<unk>"])
    with pytest.raises(ValueError, match="distinct"):
        Vocab(["<pad>", "<unk>", "a", "a"])
