"""From settings to encoded splits: read, choose the label space, convert tags, window."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from nerkd.data.encode import EncodeStats, Window, encode
from nerkd.data.labels import LabelSpace, relabel_map
from nerkd.data.readers import read_sentences
from nerkd.data.schemes import convert, detect_scheme, entity_types, split_tag
from nerkd.data.sentences import ReadStats, Sentence
from nerkd.errors import DataError, SettingsError
from nerkd.settings import DATA_FILES, check_data_files


@dataclass
class Split:
    name: str
    path: str
    sentences: list[Sentence]
    read: ReadStats
    windows: list[Window] = field(default_factory=list)
    encoded: EncodeStats = field(default_factory=EncodeStats)

    @property
    def gold_tags(self) -> list[list[str]]:
        return [s.tags for s in self.sentences]


def split_paths(data_settings) -> dict[str, str]:
    return {name: getattr(data_settings, name) for name in ("train", "dev", "test")
            if getattr(data_settings, name)}


def read_split(name: str, path: str | Path, data_settings, label_settings=None) -> Split:
    """Read one file; ``label_settings`` (``settings.labels``) applies ``labels.drop`` / ``labels.map``. A
    missing file of a data setting (``name`` train, dev or test) is named with its setting (``data.train``)."""
    if name in DATA_FILES and str(path) == str(getattr(data_settings, name, None)):
        check_data_files(data_settings, (name,))
    sentences, stats = read_sentences(path, data_settings.format, data_settings.limit, relabel_map(label_settings))
    return Split(name, str(path), sentences, stats)


def data_scheme(splits: list[Split], forced: str = "auto") -> str:
    if forced != "auto":
        return forced
    return detect_scheme(t for sp in splits for t in sp.read.tags)


def label_space_for(splits: list[Split], data_settings) -> LabelSpace:
    """``data.label2id`` if given, else built from the types seen, in the data's scheme."""
    if data_settings.label2id:
        check_data_files(data_settings, ("label2id",))
        return replace(LabelSpace.from_file(data_settings.label2id), origin="data.label2id")
    if not splits:
        raise SettingsError("data: no data file configured (set data.train / data.dev / data.test)")
    types = entity_types(t for sp in splits for t in sp.read.tags)
    return LabelSpace.build(types, data_scheme(splits, data_settings.scheme))


@dataclass(frozen=True)
class UnknownTags:
    """Tags of a split whose type the label space lacks: the first one, where, and how many."""

    path: str
    line: int
    tag: str
    types: tuple[str, ...]
    count: int
    label_set: str

    def error(self) -> DataError:
        types = ", ".join(self.types)
        count = "1 tag" if self.count == 1 else f"{self.count} tags"
        return DataError(self.path, self.line,
                         f"unknown tag {self.tag} (types not in {self.label_set}: {types}; {count} in this file); "
                         f"drop them with labels.drop: [{types}] or map them with labels.map: {{{self.types[0]}: ...}}")


def unknown_tags(split: Split, space: LabelSpace) -> UnknownTags | None:
    """The tags of ``split`` whose entity type ``space`` does not have; None when there are none."""
    known = set(space.types)
    if all(t == "O" or split_tag(t)[1] in known for t in split.read.tags):
        return None
    first: tuple[str, int, str] | None = None
    types: set[str] = set()
    count = 0
    for sent in split.sentences:
        for i, tag in enumerate(sent.tags):
            etype = split_tag(tag)[1]
            if etype is not None and etype not in known:
                count += 1
                types.add(etype)
                if first is None:
                    first = (sent.source or split.path, sent.line_of(i), tag)
    if first is None:
        return None
    label_set = space.origin or f"the label set ({', '.join(space.types) or 'O only'})"
    return UnknownTags(first[0], first[1], first[2], tuple(sorted(types)), count, label_set)


def tag_ids(split: Split, space: LabelSpace) -> list[list[int]]:
    """Tags converted to ``space``'s scheme, as ids; an unknown tag names its file and line.

    Every sentence goes through :func:`convert`: valid tags come out unchanged, and a tag that
    breaks the scheme (an ``I-X`` after ``O`` in BIO) is read as the span reader reads it (``B-X``),
    as evaluation reads it.
    """
    bad = unknown_tags(split, space)
    if bad is not None:
        raise bad.error()
    l2i, scheme = space.label2id, space.scheme
    out = []
    for sent in split.sentences:
        tags = convert(sent.tags, scheme)
        try:
            out.append([l2i[t] for t in tags])
        except KeyError as e:
            raise DataError(sent.source or split.path, sent.line,
                            f"tag {e.args[0]} (from the data, in {scheme}) is not in the label set "
                            f"({', '.join(space.labels)})") from None
    return out


def encode_split(split: Split, tokenizer, space: LabelSpace, data_settings) -> Split:
    ids = tag_ids(split, space)
    split.encoded = EncodeStats()
    split.windows = encode(tokenizer, [s.tokens for s in split.sentences], ids,
                           data_settings.max_length, data_settings.stride, split.encoded)
    return split


def load_splits(data_settings, names: tuple[str, ...] = ("train", "dev", "test"),
                label_settings=None) -> dict[str, Split]:
    paths = split_paths(data_settings)
    return {n: read_split(n, paths[n], data_settings, label_settings) for n in names if n in paths}


@dataclass(frozen=True)
class Overlap:
    """Distinct sentences (same token sequence) of one split that the training file also holds."""

    name: str
    path: str
    train_path: str
    count: int
    distinct: int

    def message(self) -> str:
        what = "1 sentence" if self.count == 1 else f"{self.count} sentences"
        verb = "appears" if self.count == 1 else "appear"
        return (f"{what} of {self.path} also {verb} in {self.train_path} "
                f"({self.count} of its {self.distinct} distinct sentences): its scores will be optimistic")


def overlaps(splits: Mapping[str, Split], train: str = "train") -> list[Overlap]:
    """For each split but ``train``, how many of its distinct sentences appear in ``train``."""
    base = splits.get(train)
    if base is None:
        return []
    seen = {tuple(s.tokens) for s in base.sentences}
    out = []
    for name, sp in splits.items():
        if name == train:
            continue
        distinct = {tuple(s.tokens) for s in sp.sentences}
        n = sum(1 for toks in distinct if toks in seen)
        if n:
            out.append(Overlap(name, sp.path, base.path, n, len(distinct)))
    return out


def data_warnings(splits: Mapping[str, Split]) -> list[str]:
    """Per-file tag-scheme breaks, then train/dev/test overlaps: problems worth a warning, never fatal."""
    out = [w for sp in splits.values() for w in sp.read.warnings()]
    return out + [o.message() for o in overlaps(splits)]


def read_notes(split: Split) -> str:
    """``", 3 empty sentences skipped, ..."`` for a split's summary line ("" when nothing to say)."""
    return "".join(f", {n}" for n in split.read.notes())
