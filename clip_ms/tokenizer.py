"""OpenAI CLIP's byte-level BPE tokenizer (numpy only; no MindSpore, no torch).

Text goes through: ftfy ``fix_text`` -> HTML unescape (twice, for doubly escaped entities) -> strip -> runs of
whitespace become one space -> lower case -> split by CLIP's pattern (the two special tokens, English contractions,
letter runs, single digits, runs of other non-space characters; ``regex`` module Unicode classes) -> each piece's
UTF-8 bytes mapped to printable characters -> BPE merges from ``bpe_simple_vocab_16e6.txt.gz`` (the first 48894
merges) -> ids. ``tokenize`` adds the start (49406) and end (49407) tokens and zero-pads to the context length.
"""
import gzip
import html
import os
import threading

import ftfy
import numpy as np
import regex

__all__ = ["SimpleTokenizer", "ContextLengthError", "tokenize", "decode", "default_tokenizer",
           "DEFAULT_BPE_PATH", "SOT_TOKEN", "EOT_TOKEN"]

DEFAULT_BPE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bpe_simple_vocab_16e6.txt.gz")
SOT_TEXT, EOT_TEXT = "<|startoftext|>", "<|endoftext|>"
SOT_TOKEN, EOT_TOKEN = 49406, 49407
# The released vocabulary: 256 byte symbols, the same 256 as word ends, 48894 merges, 2 special tokens = 49408.
_NUM_MERGES = 49152 - 256 - 2

_SPLIT_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE)
_WHITESPACE = regex.compile(r"\s+")


class ContextLengthError(ValueError, RuntimeError):
    """A text needs more tokens than the context length (a RuntimeError too, as OpenAI's tokenize raises)."""


def _byte_symbols():
    """The 256 printable characters standing for the 256 byte values, in vocabulary order.

    Bytes that are printable Latin-1 characters (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand for themselves, in
    that order; the other 68 bytes (controls, space, soft hyphen) get ``chr(256 + k)`` in byte order, so no symbol is
    whitespace or a control character.

    Returns:
        list of ``(byte value, symbol)`` pairs, in vocabulary order.
    """
    printable = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
    others = [b for b in range(256) if b not in set(printable)]
    return [(b, chr(b)) for b in printable] + [(b, chr(256 + k)) for k, b in enumerate(others)]


def _clean(text):
    """ftfy fix, double HTML unescape, whitespace collapse, lower case - the text CLIP actually splits."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


class SimpleTokenizer:
    """CLIP's BPE tokenizer over a merges file.

    Args:
        bpe_path: gzip merges file (default: the ``bpe_simple_vocab_16e6.txt.gz`` shipped in this package).

    Attributes:
        encoder: dict symbol string -> id (49408 entries for the released file).
        decoder: dict id -> symbol string.
    """

    def __init__(self, bpe_path=DEFAULT_BPE_PATH):
        try:
            with gzip.open(bpe_path, "rt", encoding="utf-8") as handle:
                lines = handle.read().split("\n")
        except (OSError, EOFError) as exc:
            raise ValueError("cannot read the BPE merges file %s (%s)" % (bpe_path, exc)) from None
        # Line 0 is a version header; only the first _NUM_MERGES merges were used to train CLIP.
        merges = [tuple(line.split()) for line in lines[1:_NUM_MERGES + 1]]
        if len(merges) != _NUM_MERGES or any(len(m) != 2 for m in merges):
            raise ValueError("%s is not CLIP's merges file: expected %d merge pairs after the header"
                             % (bpe_path, _NUM_MERGES))
        pairs = _byte_symbols()
        self.byte_encoder = dict(pairs)
        self.byte_decoder = {symbol: b for b, symbol in pairs}
        symbols = [s for _, s in pairs]
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [SOT_TEXT, EOT_TEXT]
        self.encoder = {symbol: i for i, symbol in enumerate(vocab)}
        self.decoder = {i: symbol for symbol, i in self.encoder.items()}
        self.bpe_ranks = {pair: rank for rank, pair in enumerate(merges)}
        # Word -> space-joined BPE symbols. The special tokens map to themselves, so a literal "<|endoftext|>" in
        # a text becomes the special id, as in OpenAI's tokenizer.
        self._cache = {SOT_TEXT: SOT_TEXT, EOT_TEXT: EOT_TEXT}
        self._lock = threading.Lock()

    def __getstate__(self):
        # Picklable for spawned DataLoader workers: the lock is per process.
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def bpe(self, word):
        """Apply the merges to one pre-split word (already mapped to byte symbols).

        Args:
            word: non-empty string of byte symbols.

        Returns:
            Space-separated BPE symbols; the last one carries the ``</w>`` word-end marker.
        """
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            # The adjacent pair with the best (lowest) merge rank is merged everywhere, left to right.
            best, best_rank = None, None
            for pair in zip(parts, parts[1:]):
                rank = self.bpe_ranks.get(pair)
                if rank is not None and (best_rank is None or rank < best_rank):
                    best, best_rank = pair, rank
            if best is None:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == best[0] and parts[i + 1] == best[1]:
                    merged.append(best[0] + best[1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        result = " ".join(parts)
        with self._lock:
            self._cache[word] = result
        return result

    def encode(self, text):
        """BPE ids of a text, without start/end tokens.

        Args:
            text: any string.

        Returns:
            list of int ids.
        """
        ids = []
        for piece in _SPLIT_PATTERN.findall(_clean(text)):
            symbols = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[s] for s in self.bpe(symbols).split(" "))
        return ids

    def decode(self, ids):
        """Text of BPE ids, exactly as OpenAI's decoder: word ends become spaces, bad UTF-8 becomes U+FFFD.

        Args:
            ids: iterable of ints (special tokens decode to their ``<|...|>`` text).

        Returns:
            str.
        """
        try:
            symbols = "".join(self.decoder[int(i)] for i in ids)
        except KeyError as exc:
            raise ValueError("token id %s is outside the vocabulary (0..%d)" % (exc.args[0], len(self.decoder) - 1)) \
                from None
        raw = bytearray()
        for char in symbols:
            # Special tokens are plain ASCII text and decode to themselves.
            raw.append(self.byte_decoder[char])
        return raw.decode("utf-8", errors="replace").replace("</w>", " ")

    def tokenize(self, texts, context_length=77, truncate=False):
        """Token ids for a batch of texts, padded: start token, BPE ids, end token, zeros.

        Args:
            texts: a string or a list of strings.
            context_length: row length (77 for every CLIP model).
            truncate: cut texts that are too long, keeping the end token as the last id.

        Returns:
            int32 ``np.ndarray`` (N, context_length).

        Raises:
            ContextLengthError: a text is too long and ``truncate`` is False (the message quotes it).
        """
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(context_length, (int, np.integer)) or context_length < 1:
            raise ValueError("context_length must be a positive int, got %r" % (context_length,))
        result = np.zeros((len(texts), int(context_length)), dtype=np.int32)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError("tokenize expects strings; item %d is %s" % (row, type(text).__name__))
            ids = [SOT_TOKEN] + self.encode(text) + [EOT_TOKEN]
            if len(ids) > context_length:
                if not truncate:
                    raise ContextLengthError("Input %r is too long for context length %d (%d tokens); pass "
                                             "truncate=True to cut it" % (text, context_length, len(ids)))
                ids = ids[:context_length]
                ids[-1] = EOT_TOKEN
            result[row, :len(ids)] = ids
        return result


_DEFAULT = None
_DEFAULT_LOCK = threading.Lock()


def default_tokenizer():
    """The shared tokenizer over the packaged vocabulary.

    Returns:
        :class:`SimpleTokenizer`, built on first use (~0.2 s) and reused, so its word cache is shared.
    """
    global _DEFAULT
    if _DEFAULT is None:
        with _DEFAULT_LOCK:
            if _DEFAULT is None:
                _DEFAULT = SimpleTokenizer()
    return _DEFAULT


def tokenize(texts, context_length=77, truncate=False):
    """OpenAI's ``clip.tokenize``: texts -> int32 (N, context_length) ids, zero-padded.

    Args:
        texts: a string or a list of strings.
        context_length: row length (77).
        truncate: cut over-long texts (last id stays the end token) instead of raising.

    Returns:
        int32 ``np.ndarray`` (N, context_length).

    Raises:
        ContextLengthError: a text needs more than ``context_length`` tokens and ``truncate`` is False.
    """
    return default_tokenizer().tokenize(texts, context_length=context_length, truncate=truncate)


def decode(token_ids, strip_special=True):
    """Text of token ids.

    Args:
        token_ids: 1-D ids (a row of :func:`tokenize`, or plain BPE ids).
        strip_special: drop a leading start token and cut at the first end token (which also drops the zero
            padding); False decodes every id as OpenAI's ``SimpleTokenizer.decode`` does.

    Returns:
        str (word ends are spaces, so it usually ends with a space, as in OpenAI's decoder).
    """
    ids = [int(i) for i in np.asarray(token_ids).reshape(-1)]
    if strip_special:
        if ids and ids[0] == SOT_TOKEN:
            ids = ids[1:]
        if EOT_TOKEN in ids:
            ids = ids[:ids.index(EOT_TOKEN)]
    return default_tokenizer().decode(ids)
