"""Label spaces (``label2id.json``) and the type-level mapping between two label spaces.

Teacher and student may tag the same entity types in different schemes (camembert-ner is IO,
domain data is usually BIO). :func:`type_mapping` builds the shared space used for
distillation: ``O`` plus the types both sides have. Each label of either side maps to one
column of that space (B/I/E/S of a type are marginalised together); a type only the teacher
has (MISC for camembert-ner) folds into ``O`` or is dropped, as ``labels.teacher_only`` says;
a type only the data has folds into ``O`` on the student side and its gold tokens get no KD
signal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from nerkd.data.schemes import detect_scheme, labels_for, split_tag
from nerkd.errors import DataError
from nerkd.io import write_json


@dataclass(frozen=True)
class LabelSpace:
    labels: tuple[str, ...]
    origin: str = field(default="", compare=False, repr=False)   # where it came from, for messages


    def __post_init__(self) -> None:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("duplicate labels")
        if "O" not in self.labels:
            raise ValueError('a label space needs the "O" label')

    @property
    def label2id(self) -> dict[str, int]:
        return {lab: i for i, lab in enumerate(self.labels)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    @property
    def types(self) -> list[str]:
        return sorted({t for lab in self.labels if (t := split_tag(lab)[1])})

    @property
    def scheme(self) -> str:
        return detect_scheme(self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def build(cls, types: Iterable[str], scheme: str) -> LabelSpace:
        return cls(tuple(labels_for(types, scheme)))

    @classmethod
    def from_mapping(cls, label2id: Mapping[str, int]) -> LabelSpace:
        ordered = sorted(label2id.items(), key=lambda kv: int(kv[1]))
        ids = [int(i) for _, i in ordered]
        if ids != list(range(len(ids))):
            raise ValueError(f"ids must be 0..{len(ids) - 1} without gaps, got {ids}")
        for lab, _ in ordered:
            split_tag(lab)
        return cls(tuple(lab for lab, _ in ordered))

    @classmethod
    def from_file(cls, path: str | Path) -> LabelSpace:
        path = Path(path)
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise DataError(path, None, "file not found") from None
        except orjson.JSONDecodeError as e:
            raise DataError(path, None, f"invalid JSON ({e.args[0].split(':')[0]})") from None
        if not isinstance(data, dict) or not data:
            raise DataError(path, None, 'expected a non-empty object {"label": id, ...}')
        try:
            return cls.from_mapping(data)
        except (ValueError, TypeError) as e:
            raise DataError(path, None, str(e)) from None

    @classmethod
    def from_config(cls, config) -> LabelSpace:
        """From a transformers config's ``id2label``."""
        return cls(tuple(config.id2label[i] for i in range(len(config.id2label))))

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.label2id)


def relabel_map(label_settings) -> dict[str, str]:
    """``labels.drop`` and ``labels.map`` as one ``{type: new type or "O"}`` applied when data is read."""
    if label_settings is None:
        return {}
    out = {t: "O" for t in label_settings.drop}
    out.update(label_settings.map)
    return out


@dataclass(frozen=True)
class TypeMapping:
    """Both sides' labels projected onto the shared space ``["O", *shared]``."""

    shared: tuple[str, ...]            # column names; column 0 is "O"
    teacher_cols: tuple[int, ...]      # teacher label id -> column, or -1 (dropped)
    student_cols: tuple[int, ...]      # student label id -> column
    teacher_only: tuple[str, ...]
    data_only: tuple[str, ...]
    renamed: tuple[tuple[str, str], ...] = ()

    def describe(self, teacher: LabelSpace, student: LabelSpace) -> list[tuple[str, str, str]]:
        """Rows ``(teacher labels, student labels, shared column)`` for logs and tables."""
        rows = []
        for col, name in enumerate(self.shared):
            t = [teacher.labels[i] for i, c in enumerate(self.teacher_cols) if c == col]
            s = [student.labels[i] for i, c in enumerate(self.student_cols) if c == col]
            rows.append((" ".join(t) or "-", " ".join(s) or "-", name))
        dropped = [teacher.labels[i] for i, c in enumerate(self.teacher_cols) if c < 0]
        if dropped:
            rows.append((" ".join(dropped), "-", "(dropped, renormalised)"))
        return rows


def type_mapping(teacher: LabelSpace, student: LabelSpace, rename: Mapping[str, str] | None = None,
                 teacher_only: str = "outside") -> TypeMapping:
    rename = dict(rename or {})
    t_types = {rename.get(t, t) for t in teacher.types}
    s_types = set(student.types)
    shared = ("O", *sorted(t_types & s_types))
    col = {name: i for i, name in enumerate(shared)}

    def teacher_col(label: str) -> int:
        etype = split_tag(label)[1]
        if etype is None:
            return 0
        etype = rename.get(etype, etype)
        if etype in col:
            return col[etype]
        return 0 if teacher_only == "outside" else -1

    def student_col(label: str) -> int:
        etype = split_tag(label)[1]
        return col.get(etype, 0) if etype else 0

    return TypeMapping(
        shared=shared,
        teacher_cols=tuple(teacher_col(lab) for lab in teacher.labels),
        student_cols=tuple(student_col(lab) for lab in student.labels),
        teacher_only=tuple(sorted(t_types - s_types)),
        data_only=tuple(sorted(s_types - t_types)),
        renamed=tuple(sorted(rename.items())),
    )
