"""The unlabelled transfer set of ``distill`` (``data.unlabeled``): read, cleaned, streamed, windowed.

**Reading.** The file is read by :func:`nerkd.data.docs.read_docs`, as ``nerkd infer`` reads its
input: plain text (one text per line) or JSONL objects with ``"text"`` (format detected from the
first non-empty line). Invalid UTF-8 or bad JSON is a :class:`~nerkd.errors.DataError` naming
``file:line``. Texts are split into words by :func:`nerkd.data.words.split_words`, the splitter of
``nerkd infer``, so the student learns on the words it will see at inference.

**Hygiene** (:func:`scan_unlabeled`, one streaming pass at set-up), in this order, each counted:

* *empty*: blank lines (and JSONL texts with no non-space character) are skipped;
* *leaked*: a text that is a dev or test sentence is dropped (:class:`LeakFilter`). Texts are
  compared on their characters with all whitespace removed (NFC, ``’`` read as ``'``): the word
  sequence of ``split_words(text)`` and a gold sentence's tokens match whenever their concatenations
  do, whatever the detokenisation (``l' EHPAD`` / ``l'EHPAD``, ``Lyon .`` / ``Lyon.``), and so do a
  gold sentence written whole on a line and one split into other tokens. A gold sentence of at least
  :data:`EMBED_MIN_WORDS` tokens *inside* a longer text is caught too when it sits between sentence
  ends (``. ! ? …`` then a space) or the text's edges; the whole text is then dropped. Each dropped
  text is counted once, for the first split (in the order given) it matches;
* *duplicates*: a text equal (same comparison) to an earlier kept text of the file is dropped, so the
  transfer set weighs every distinct text once, as the file's author meant;
* ``max_texts`` (``distill.unlabeled_max``): the file is read until that many texts are kept; the
  rest is never read.

**Streaming.** Nothing holds the file: the scan keeps counts, a set of 8-byte digests of the kept
texts (for duplicates; freed when the scan ends), the line numbers it skips, and the byte offset of
every :data:`CHUNK`-th kept text. :class:`EpochSampler` then reads one chunk of texts at a time
(re-opening the file and seeking), so memory is one chunk, however big the file.

**Order.** Kept texts are numbered 0..n-1 in file order (their *ordinal*, a stable key for a
teacher-output cache). The sampler serves an endless stream: pass 0 over the n texts, then pass 1,
and so on. With ``shuffle`` (the default), each pass visits the chunks in an order drawn from
``(seed, pass)`` and the texts of each chunk in an order drawn from ``(seed, pass, chunk)``; every
pass serves every kept text exactly once. Position *g* of the stream depends only on ``seed`` and
*g*, so the whole state is ``consumed`` (texts served so far): :meth:`EpochSampler.state_dict`.

**Windows.** :func:`encode_texts` cuts texts into windows with :func:`nerkd.data.encode.encode`
(never truncated: every word is owned by exactly one window); every label is ``IGNORE``, so no CE
or CRF term can see these windows; ``word_index >= 0`` marks the owned words (the KD positions).
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nerkd.data.docs import Doc, _decode, detect_format, read_docs
from nerkd.data.encode import IGNORE, EncodeStats, PieceCache, Window, encode
from nerkd.data.words import split_words
from nerkd.errors import DataError
from nerkd.settings import check_data_files

CHUNK = 4096            # texts per read (and per shuffle block) of the sampler
EMBED_MIN_WORDS = 5     # gold sentences this long are also looked for inside longer texts
_MAX_RUN = 32           # at most this many sentence pieces are joined when looking inside a text
_SENTENCE_END = re.compile(r"(?<=[.!?\u2026])\s+")


def text_key(text: str) -> str:
    """What two texts are compared on: NFC, ``’`` as ``'``, every whitespace removed."""
    return "".join(unicodedata.normalize("NFC", text).replace("\u2019", "'").split())


def texts_per_epoch(ratio: float, gold_windows: int) -> int:
    """Unlabelled texts an epoch takes (``distill.unlabeled_ratio``): ``ratio`` x the epoch's gold
    training windows, rounded half up; at least 1 when ``ratio > 0`` and there is gold."""
    if ratio <= 0 or gold_windows <= 0:
        return 0
    return max(1, int(ratio * gold_windows + 0.5))


# --------------------------------------------------------------------------------------------- reading


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(path, None, "file not found")


def file_format(path: str | Path) -> str:
    """``text`` or ``jsonl``, from the first non-empty line as ``read_docs`` detects it (``text`` if
    there is none)."""
    path = Path(path)
    _check_file(path)
    with path.open("rb") as fh:
        for no, raw in enumerate(fh, start=1):
            text = _decode(raw, str(path), no)
            if text.strip():
                return detect_format(text)
    return "text"


def iter_texts(path: str | Path, fmt: str = "auto") -> Iterator[Doc]:
    """Every line of the file as a :class:`~nerkd.data.docs.Doc` (``line``, ``text``, ``size`` in
    bytes), lazily: one line is decoded per item; a bad line raises when it is reached."""
    path = Path(path)
    _check_file(path)
    if fmt == "auto":
        fmt = file_format(path)
    with path.open("rb") as fh:
        yield from read_docs(fh, str(path), fmt)


@dataclass
class UnlabeledText:
    ordinal: int            # 0-based rank among the kept texts, in file order
    line: int               # 1-based line of the file
    text: str
    words: list[str]        # split_words(text), the words the student sees


# --------------------------------------------------------------------------------------------- hygiene


class LeakFilter:
    """Which evaluation split, if any, a text reproduces (see module doc)."""

    def __init__(self, gold: Mapping[str, Iterable[Sequence[str]]]):
        self.names = list(gold)
        self.whole: dict[str, str] = {}      # key -> first split holding it
        self.inner: dict[str, str] = {}      # keys of sentences long enough to be looked for inside a text
        self.max_run = 1
        for name, sentences in gold.items():
            for tokens in sentences:
                key = text_key("".join(tokens))
                if not key:
                    continue
                self.whole.setdefault(key, name)
                if len(tokens) >= EMBED_MIN_WORDS:
                    self.inner.setdefault(key, name)
                    pieces = len(_SENTENCE_END.split(" ".join(tokens).strip()))
                    self.max_run = max(self.max_run, min(pieces, _MAX_RUN))

    @classmethod
    def from_splits(cls, splits: Mapping, names: Sequence[str] = ("dev", "test")) -> LeakFilter:
        """From ``load_splits``' result (objects with ``.sentences`` of ``.tokens``); absent names skipped."""
        return cls({n: [s.tokens for s in splits[n].sentences] for n in names if n in splits})

    def __bool__(self) -> bool:
        return bool(self.whole)

    def match(self, text: str, key: str | None = None) -> str | None:
        """The split ``text`` leaks, or None."""
        if not self.whole:
            return None
        key = text_key(text) if key is None else key
        hit = self.whole.get(key)
        if hit is not None or not self.inner:
            return hit
        pieces = [text_key(p) for p in _SENTENCE_END.split(text.strip())]
        if len(pieces) < 2:
            return None
        for i in range(len(pieces)):
            run = ""
            for j in range(i, min(i + self.max_run, len(pieces))):
                run += pieces[j]
                hit = self.inner.get(run)
                if hit is not None:
                    return hit
        return None


# --------------------------------------------------------------------------------------------- scan


@dataclass
class UnlabeledSummary:
    """What the transfer set holds and what was dropped (for ``nerkd validate`` and the run log)."""

    path: str
    format: str = "text"
    lines: int = 0                 # lines read
    texts: int = 0                 # texts kept
    words: int = 0                 # words of the kept texts
    empty: int = 0                 # blank lines skipped
    duplicates: int = 0            # texts dropped as repeats of an earlier kept text
    leaked: dict[str, int] = field(default_factory=dict)      # split -> texts dropped as in that split
    first_leak: dict[str, int] = field(default_factory=dict)  # split -> line of the first such text
    capped: bool = False           # max_texts reached before the end of the file
    windows: int | None = None     # with a tokenizer: windows of the kept texts,
    split_texts: int | None = None  # and texts longer than one window

    @property
    def dropped_leaking(self) -> int:
        return sum(self.leaked.values())

    def describe(self) -> str:
        """One line: ``"1,200 texts, 30,511 words (3 empty lines skipped, 2 duplicates dropped, ...)"``."""
        notes = []
        if self.empty:
            notes.append(f"{self.empty:,} empty lines skipped")
        if self.duplicates:
            notes.append(f"{self.duplicates:,} duplicates dropped")
        for name, n in self.leaked.items():
            if n:
                notes.append(f"{n:,} dropped as in {name} (first at line {self.first_leak[name]})")
        if self.capped:
            notes.append(f"capped at {self.texts:,} texts, {self.lines:,} lines read")
        if self.windows is not None:
            notes.append(f"{self.windows:,} windows, {self.split_texts:,} long texts split")
        more = f" ({', '.join(notes)})" if notes else ""
        return f"{self.path} ({self.format}): {self.texts:,} texts, {self.words:,} words{more}"


@dataclass
class UnlabeledIndex:
    """Where the kept texts of a file are (see module doc); built by :func:`scan_unlabeled`."""

    path: str
    format: str
    summary: UnlabeledSummary
    skip: frozenset[int]                  # lines up to ``last_line`` dropped as leaked or duplicate
    last_line: int                        # lines after it are not used
    starts: list[tuple[int, int]]         # (byte offset, line) of kept texts 0, chunk, 2 chunk, ...
    chunk: int = CHUNK

    @property
    def texts(self) -> int:
        return self.summary.texts

    def chunk_size(self, c: int) -> int:
        return min(self.chunk, self.texts - c * self.chunk)

    def read_chunk(self, c: int) -> list[UnlabeledText]:
        """The kept texts ``c * chunk ..`` (at most ``chunk``), re-reading the file from their offset."""
        offset, first_line = self.starts[c]
        want, out = self.chunk_size(c), []
        path = Path(self.path)
        _check_file(path)
        with path.open("rb") as fh:
            fh.seek(offset)
            for doc in read_docs(fh, self.path, self.format):
                line = first_line + doc.line - 1
                if line > self.last_line:
                    break
                if line in self.skip or not doc.text.strip():
                    continue
                out.append(UnlabeledText(c * self.chunk + len(out), line, doc.text,
                                         [w for w, _, _ in split_words(doc.text)]))
                if len(out) == want:
                    break
        if len(out) != want:
            raise DataError(self.path, None, "the file changed while it was in use (fewer texts than scanned)")
        return out

    def iter_kept(self) -> Iterator[UnlabeledText]:
        """Every kept text once, in file order, one chunk in memory at a time."""
        for c in range(len(self.starts)):
            yield from self.read_chunk(c)


def _digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()


def scan_unlabeled(path: str | Path, gold: Mapping[str, Iterable[Sequence[str]]] | LeakFilter | None = None,
                   max_texts: int | None = None, fmt: str = "auto", chunk: int = CHUNK) -> UnlabeledIndex:
    """One streaming pass: count, drop empty / leaked / duplicate texts, and index the kept ones.

    ``gold``: the evaluation splits' token lists by name (``{"dev": [...], "test": [...]}``) or a
    :class:`LeakFilter`. Raises :class:`DataError` (``file:line``) on a bad line of the read part.
    """
    path = Path(path)
    fmt = file_format(path) if fmt == "auto" else fmt
    leaks = gold if isinstance(gold, LeakFilter) else LeakFilter(gold or {})
    summary = UnlabeledSummary(str(path), fmt, leaked=dict.fromkeys(leaks.names, 0))
    seen: set[bytes] = set()
    skip: set[int] = set()
    starts: list[tuple[int, int]] = []
    offset = 0
    for doc in iter_texts(path, fmt):
        here, offset = offset, offset + doc.size
        if max_texts is not None and summary.texts >= max_texts:
            summary.capped = True
            break
        summary.lines = doc.line
        key = text_key(doc.text)
        if not key:                      # blank: not in ``skip`` (read_chunk skips blanks itself)
            summary.empty += 1
            continue
        if (split := leaks.match(doc.text, key)) is not None:
            summary.leaked[split] += 1
            summary.first_leak.setdefault(split, doc.line)
        elif (digest := _digest(key)) in seen:
            summary.duplicates += 1
        else:
            seen.add(digest)
            if summary.texts % chunk == 0:
                starts.append((here, doc.line))
            summary.texts += 1
            summary.words += len(split_words(doc.text))
            continue
        skip.add(doc.line)
    return UnlabeledIndex(str(path), fmt, summary, frozenset(skip), summary.lines, starts, chunk)


def count_windows(index: UnlabeledIndex, tokenizer, max_length: int, stride: int,
                  stats: EncodeStats | None = None) -> EncodeStats:
    """Window the kept texts as training will (streamed, chunk by chunk) and count; fills the summary."""
    stats = stats if stats is not None else EncodeStats()
    cache = PieceCache(tokenizer)
    for c in range(len(index.starts)):
        encode_texts(tokenizer, index.read_chunk(c), max_length, stride, stats, cache)
    index.summary.windows, index.summary.split_texts = stats.windows, stats.split_sentences
    return stats


def summarize_unlabeled(path: str | Path, gold: Mapping[str, Iterable[Sequence[str]]] | LeakFilter | None = None,
                        max_texts: int | None = None, tokenizer=None, max_length: int = 128,
                        stride: int = 32) -> UnlabeledSummary:
    """The summary ``nerkd validate`` shows: texts, words, empty, duplicates, dropped for leaking (by
    split) and, given a tokenizer, windows and long texts split. Prints nothing."""
    index = scan_unlabeled(path, gold, max_texts)
    if tokenizer is not None:
        count_windows(index, tokenizer, max_length, stride)
    return index.summary


def transfer_set(settings, splits: Mapping, leak_splits: Sequence[str] = ("dev", "test")) -> UnlabeledIndex | None:
    """The scanned ``data.unlabeled`` of ``settings`` (None when unset), dev and test of ``splits`` (as
    ``load_splits`` returns them) as the leak filter, ``distill.unlabeled_max`` as the cap."""
    if not settings.data.unlabeled:
        return None
    check_data_files(settings.data, ("unlabeled",))
    return scan_unlabeled(settings.data.unlabeled, LeakFilter.from_splits(splits, leak_splits),
                          settings.distill.unlabeled_max)


# --------------------------------------------------------------------------------------------- sampling


class EpochSampler:
    """An endless, deterministic stream of the kept texts (see module doc), read one chunk at a time.

    ``take(n)`` serves the next ``n`` texts (cycling through passes); ``texts(start, n)`` the texts at
    stream positions ``start .. start + n - 1``, without changing the state. Position *g* depends only
    on the index, ``seed``, ``shuffle`` and *g*, so resuming needs only :meth:`state_dict`.
    """

    def __init__(self, index: UnlabeledIndex, seed: int = 0, shuffle: bool = True):
        if index.texts == 0:
            s = index.summary
            raise DataError(index.path, None, f"no usable text ({s.empty} empty lines, {s.duplicates} duplicates, "
                                              f"{s.dropped_leaking} dropped as in dev/test)")
        self.index, self.seed, self.shuffle = index, seed, shuffle
        self.consumed = 0
        self._cached: tuple[int, list[UnlabeledText]] | None = None   # (chunk, its texts): one in memory

    @property
    def passes(self) -> float:
        """How many times the set has been gone through (1.5: one pass and a half)."""
        return self.consumed / self.index.texts

    def state_dict(self) -> dict:
        return {"consumed": self.consumed, "texts": self.index.texts, "lines": self.index.last_line,
                "seed": self.seed, "shuffle": self.shuffle}

    def load_state_dict(self, state: Mapping) -> None:
        """Resume at a saved position; the same file, cap, seed and order are required."""
        mine = self.state_dict()
        for key in ("texts", "lines", "seed", "shuffle"):
            if state.get(key) != mine[key]:
                raise DataError(self.index.path, None, f"does not match the checkpoint ({key}: {state.get(key)!r} "
                                                       f"then, {mine[key]!r} now): the set changed since")
        self.consumed = int(state["consumed"])

    def _chunk_order(self, p: int) -> list[int]:
        order = list(range(len(self.index.starts)))
        if self.shuffle:
            random.Random(f"{self.seed}:{p}").shuffle(order)
        return order

    def _chunk_texts(self, p: int, c: int) -> list[UnlabeledText]:
        if self._cached is None or self._cached[0] != c:
            self._cached = (c, self.index.read_chunk(c))
        texts = self._cached[1]
        if not self.shuffle:
            return texts
        order = list(range(len(texts)))
        random.Random(f"{self.seed}:{p}:{c}").shuffle(order)
        return [texts[i] for i in order]

    def iter_from(self, start: int) -> Iterator[UnlabeledText]:
        """The stream from position ``start`` on (endless)."""
        n = self.index.texts
        p, offset = divmod(start, n)
        while True:
            done = 0
            for c in self._chunk_order(p):
                size = self.index.chunk_size(c)
                if done + size <= offset:
                    done += size
                    continue
                yield from self._chunk_texts(p, c)[max(0, offset - done):]
                done += size
            p, offset = p + 1, 0

    def texts(self, start: int, n: int) -> list[UnlabeledText]:
        out = []
        if n > 0:
            for text in self.iter_from(start):
                out.append(text)
                if len(out) == n:
                    break
        return out

    def take(self, n: int) -> list[UnlabeledText]:
        out = self.texts(self.consumed, n)
        self.consumed += len(out)
        return out


# --------------------------------------------------------------------------------------------- windows


def encode_texts(tokenizer, texts: Sequence[UnlabeledText], max_length: int, stride: int,
                 stats: EncodeStats | None = None, cache: PieceCache | None = None) -> list[Window]:
    """Windows of the texts' words (``Window.sent`` = index in ``texts``), every label ``IGNORE``;
    long texts split into overlapping windows, never truncated; ``stats`` counts split texts."""
    windows = encode(tokenizer, [t.words for t in texts], None, max_length, stride, stats, cache=cache)
    for w in windows:
        w.labels = [IGNORE] * len(w.labels)
    return windows
