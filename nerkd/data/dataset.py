"""From settings to encoded splits: read, choose the label space, convert tags, window."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nerkd.data.encode import EncodeStats, Window, encode
from nerkd.data.labels import LabelSpace
from nerkd.data.readers import ReadStats, Sentence, read_sentences
from nerkd.data.schemes import convert, detect_scheme, entity_types
from nerkd.errors import DataError, SettingsError


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


def read_split(name: str, path: str | Path, data_settings) -> Split:
    sentences, stats = read_sentences(path, data_settings.format, data_settings.limit)
    return Split(name, str(path), sentences, stats)


def data_scheme(splits: list[Split], forced: str = "auto") -> str:
    if forced != "auto":
        return forced
    return detect_scheme(t for sp in splits for t in sp.read.tags)


def label_space_for(splits: list[Split], data_settings) -> LabelSpace:
    """``data.label2id`` if given, else built from the types seen, in the data's scheme."""
    if data_settings.label2id:
        return LabelSpace.from_file(data_settings.label2id)
    if not splits:
        raise SettingsError("data: no data file configured (set data.train / data.dev / data.test)")
    types = entity_types(t for sp in splits for t in sp.read.tags)
    return LabelSpace.build(types, data_scheme(splits, data_settings.scheme))


def tag_ids(split: Split, space: LabelSpace) -> list[list[int]]:
    """Tags converted to ``space``'s scheme, as ids; an unknown tag names its file and line."""
    l2i, scheme = space.label2id, space.scheme
    out = []
    for sent in split.sentences:
        tags = sent.tags if detect_scheme(sent.tags) == scheme else convert(sent.tags, scheme)
        try:
            out.append([l2i[t] for t in tags])
        except KeyError as e:
            raise DataError(sent.source or split.path, sent.line,
                            f"unknown tag {e.args[0]!r}: not in the label set ({', '.join(space.labels)})") from None
    return out


def encode_split(split: Split, tokenizer, space: LabelSpace, data_settings) -> Split:
    ids = tag_ids(split, space)
    split.encoded = EncodeStats()
    split.windows = encode(tokenizer, [s.tokens for s in split.sentences], ids,
                           data_settings.max_length, data_settings.stride, split.encoded)
    return split


def load_splits(data_settings, names: tuple[str, ...] = ("train", "dev", "test")) -> dict[str, Split]:
    paths = split_paths(data_settings)
    return {n: read_split(n, paths[n], data_settings) for n in names if n in paths}
