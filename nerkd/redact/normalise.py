"""Normal forms of mentions (titles stripped, case folded, accents removed) and the grouping of a document's
person mentions into people, so that ``Nadia Durand``, ``Mme Durand``, ``Durand`` and ``Mme D.`` get one
replacement."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

TITLES = frozenset({"m", "mr", "mme", "mmes", "mlle", "mlles", "mm", "madame", "monsieur", "mademoiselle", "messieurs",
                    "dr", "docteur", "pr", "professeur", "me", "maitre", "sr", "soeur", "pere", "frere", "mgr"})
FEMALE_TITLES = frozenset({"mme", "mmes", "mlle", "mlles", "madame", "mademoiselle", "sr", "soeur"})
MALE_TITLES = frozenset({"m", "mr", "mm", "monsieur", "messieurs", "pere", "frere", "mgr"})
PARTICLES = frozenset({"de", "du", "des", "d", "la", "le", "van", "von", "der", "ben", "bin", "el", "al", "di", "da"})
WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*\.?")


@lru_cache(maxsize=65536)
def plain(s: str) -> str:
    """Case folded, accents removed, runs of spaces, hyphens and apostrophes made one space."""
    s = "".join(c for c in unicodedata.normalize("NFKD", s.casefold()) if unicodedata.category(c) != "Mn")
    return " ".join(re.split(r"[\s\-'’]+", s)).strip()


def value_key(label: str, text: str) -> str:
    """What makes two mentions of one label "the same value": identifiers by their letters and digits only
    (``06 12 34 56 78`` == ``0612345678``), other values by :func:`plain` form without titles."""
    if label in ("PHONE", "NIR", "IBAN", "SIREN", "SIRET"):
        return "".join(c for c in plain(text) if c.isalnum())
    return " ".join(t.norm for t in name_tokens(text) if not t.title) or plain(text)


@dataclass(frozen=True)
class Token:
    start: int       # offsets in the mention
    end: int
    raw: str         # as written (a trailing dot included)
    norm: str        # plain form, without the dot
    title: bool      # Mme, M., Dr...
    initial: bool    # D. or D

    @property
    def name(self) -> bool:
        return not self.title and not self.initial and self.norm not in PARTICLES


def name_tokens(mention: str) -> list[Token]:
    out = []
    for m in WORD.finditer(mention):
        raw = m.group(0)
        norm = plain(raw.rstrip("."))
        core = raw.rstrip(".")
        title = norm in TITLES and (raw.endswith(".") or core[:1].isupper() or len(norm) > 2)
        out.append(Token(m.start(), m.end(), raw, norm, title, not title and len(core) == 1))
    return out


def gender_of(tokens: list[Token]) -> str | None:
    """"f" or "m" from a title (Mme, M....), else None."""
    for t in tokens:
        if t.title and t.norm in FEMALE_TITLES:
            return "f"
        if t.title and t.norm in MALE_TITLES:
            return "m"
    return None


def group_people(mentions: list[str], positions: list[int]) -> list[int]:
    """A person number for each mention: mentions are taken longest first; one whose names are all among an
    earlier-taken person's names (initials matching a name's first letter) joins that person (the nearest in the
    text when several fit), else it starts a new one. Returns the person of each mention, in input order."""
    toks = [name_tokens(m) for m in mentions]
    names = [[t.norm for t in ts if t.name] for ts in toks]
    initials = [[t.norm for t in ts if t.initial] for ts in toks]
    order = sorted(range(len(mentions)), key=lambda i: (-len(names[i]), positions[i]))
    people: list[tuple[set[str], int]] = []     # (names, position of the first mention)
    person = [0] * len(mentions)
    for i in order:
        fits = [p for p, (known, _) in enumerate(people) if (names[i] or initials[i]) and set(names[i]) <= known
                and all(any(n.startswith(c) for n in known) for c in initials[i])]
        if fits:
            person[i] = min(fits, key=lambda p: abs(people[p][1] - positions[i]))
        else:
            people.append((set(names[i]), positions[i]))
            person[i] = len(people) - 1
    return person
