"""clip_ms tokenizer: ids identical to OpenAI's clip.tokenize on a broad case list, errors, truncation, decode."""
import hashlib
import json
import os
import time

import numpy as np
import pytest

import clip_ms
from clip_ms.tokenizer import (
    DEFAULT_BPE_PATH,
    EOT_TOKEN,
    SOT_TOKEN,
    ContextLengthError,
    SimpleTokenizer,
    decode,
    default_tokenizer,
    tokenize,
)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "clip_ms")


def load_cases():
    with open(os.path.join(FIXTURES, "tokenizer_cases.json"), encoding="ascii") as handle:
        return json.load(handle)["cases"]


CASES = load_cases()


def expected_row(case):
    row = np.zeros(case["context_length"], np.int32)
    row[: len(case["ids"])] = case["ids"]
    return row


def test_vocab_file_is_the_recorded_one():
    with open(DEFAULT_BPE_PATH, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    assert digest == "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
    tokenizer = default_tokenizer()
    assert len(tokenizer.encoder) == 49408
    assert tokenizer.encoder["<|startoftext|>"] == SOT_TOKEN == 49406
    assert tokenizer.encoder["<|endoftext|>"] == EOT_TOKEN == 49407
    assert tokenizer.encoder["!"] == 0 and tokenizer.encoder["!</w>"] == 256


def test_fixture_covers_the_promised_cases():
    texts = [c["text"] for c in CASES]
    assert "" in texts and any("😀" in t for t in texts) and any("東京" in t for t in texts)
    assert any("&amp;" in t for t in texts) and any("\t" in t for t in texts)
    assert sum("error" in c for c in CASES) >= 4 and sum(c["truncate"] for c in CASES) >= 6
    assert len(CASES) > 300


@pytest.mark.parametrize("case", [c for c in CASES if "ids" in c], ids=lambda c: repr(c["text"][:30]))
def test_ids_match_openai(case):
    ids = tokenize(case["text"], context_length=case["context_length"], truncate=case["truncate"])
    assert ids.dtype == np.int32 and ids.shape == (1, case["context_length"])
    np.testing.assert_array_equal(ids[0], expected_row(case))


@pytest.mark.parametrize("case", [c for c in CASES if "error" in c], ids=lambda c: repr(c["text"][:30]))
def test_too_long_raises_like_openai(case):
    with pytest.raises(ContextLengthError) as info:
        tokenize(case["text"], context_length=case["context_length"])
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, ValueError)
    assert repr(case["text"]) in str(info.value)
    assert "context length %d" % case["context_length"] in str(info.value)


def test_truncation_keeps_the_end_token():
    ids = tokenize("word " * 100, truncate=True)[0]
    assert ids[0] == SOT_TOKEN and ids[-1] == EOT_TOKEN and (ids != 0).all()
    assert (tokenize("a " * 75)[0] != 0).all()  # exactly 77 tokens fits
    with pytest.raises(ContextLengthError):
        tokenize("a " * 76)


def test_batch_equals_single_rows():
    cases = [c for c in CASES if "ids" in c and c["context_length"] == 77 and not c["truncate"]]
    batch = tokenize([c["text"] for c in cases])
    assert batch.shape == (len(cases), 77)
    for row, case in zip(batch, cases):
        np.testing.assert_array_equal(row, expected_row(case))
    assert tokenize([]).shape == (0, 77)
    with pytest.raises(TypeError, match="item 1 is int"):
        tokenize(["ok", 3])
    with pytest.raises(ValueError, match="context_length"):
        tokenize("x", context_length=0)


@pytest.mark.parametrize("case", CASES[::7], ids=lambda c: repr(c["text"][:30]))
def test_decode_matches_openai(case):
    tokenizer = default_tokenizer()
    assert tokenizer.decode(tokenizer.encode(case["text"])) == case["decode"]


def test_decode_of_tokenize_rows():
    row = tokenize("A photo of a CAT.")[0]
    assert decode(row) == "a photo of a cat . "
    assert decode(row, strip_special=False).startswith("<|startoftext|>a photo of a cat . <|endoftext|>")
    assert clip_ms.decode(clip_ms.tokenize("wall")[0]) == "wall "
    with pytest.raises(ValueError, match="outside the vocabulary"):
        default_tokenizer().decode([49408])


def test_150_labels_are_fast_and_cached():
    labels = [c["text"] for c in CASES[-150:]]
    tokenizer = SimpleTokenizer()
    start = time.perf_counter()
    first = tokenizer.tokenize(labels)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    second = tokenizer.tokenize(labels)
    warm = time.perf_counter() - start
    np.testing.assert_array_equal(first, second)
    assert cold < 1.0 and warm < 0.5, (cold, warm)
    assert "wall" in tokenizer._cache  # word BPE cache filled


def test_tokenizer_pickles_for_worker_processes():
    import pickle

    tokenizer = SimpleTokenizer()
    tokenizer.tokenize(["wall", "sky"])
    clone = pickle.loads(pickle.dumps(tokenizer))
    np.testing.assert_array_equal(clone.tokenize(["a photo of a wall"]), tokenizer.tokenize(["a photo of a wall"]))


def test_bad_vocab_file(tmp_path):
    bad = tmp_path / "vocab.txt.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="vocab.txt.gz"):
        SimpleTokenizer(str(bad))
