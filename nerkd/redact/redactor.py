"""Replace a document's spans: placeholders, masks or surrogates, consistent within the document (and, with a
key, across documents), with the mapping that gives the original text back."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nerkd.redact.normalise import PARTICLES, gender_of, group_people, name_tokens, plain, value_key
from nerkd.redact.rules import find_identifiers, require_rules
from nerkd.redact.spans import Span, merge_spans, model_spans
from nerkd.redact.surrogates import Chooser, require_surrogates

if TYPE_CHECKING:
    from nerkd.settings import RedactSettings

PERSON = "PER"


@dataclass
class RedactResult:
    """One redacted document. ``replacements``: ``{start, end, label, source}`` with offsets in :attr:`text`;
    ``mapping``: ``{start, end, label, original, replacement}`` (offsets in :attr:`text`), what
    :func:`nerkd.redact.restore` needs to give the original back. The mapping holds the original values: keep
    it apart, never log it."""

    text: str
    replacements: list[dict] = field(default_factory=list)
    mapping: list[dict] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The output object ``{"text", "replacements"}`` (the caller adds ``id``)."""
        return {"text": self.text, "replacements": self.replacements}

    def counts(self) -> dict[tuple[str, str], int]:
        """Replacements per ``(label, source)``."""
        out: dict[tuple[str, str], int] = {}
        for r in self.replacements:
            out[(r["label"], r["source"])] = out.get((r["label"], r["source"]), 0) + 1
        return out


class Redactor:
    """Pseudonymise texts given their model entities (``nerkd infer``'s dicts), as ``settings`` (the ``redact``
    section) say. ``key``: a secret; the same value then gets the same surrogate or placeholder code in every
    document. ``seed``: a fixed seed for the unkeyed random choices (tests; default: one from the system)."""

    def __init__(self, settings: RedactSettings, key: bytes | None = None, *, seed: int | None = None):
        if settings.rules:
            require_rules()
        if settings.mode == "surrogate":
            require_surrogates()
        if key is not None and len(key) < 16:
            raise ValueError("the key must have at least 16 bytes")
        self.settings = settings
        self.key = key
        self.chooser = Chooser(key, seed)

    def spans(self, text: str, entities: list[dict]) -> list[Span]:
        """The merged, non-overlapping spans to replace: model entities (thresholds applied) and rule spans."""
        model = model_spans(entities, self.settings.thresholds, self.settings.keep_labels)
        return merge_spans(model, find_identifiers(text, self.settings), text)

    def redact(self, text: str, entities: list[dict]) -> RedactResult:
        """``text`` with its entities and identifiers replaced (see :class:`RedactResult`)."""
        spans = self.spans(text, entities)
        values = _Document(self, text, spans).replacements()
        out: list[str] = []
        replacements, mapping = [], []
        at = shift = 0
        for span, new in zip(spans, values, strict=True):
            out.append(text[at: span.start])
            start = span.start + shift
            out.append(new)
            replacements.append({"start": start, "end": start + len(new), "label": span.label,
                                 "source": span.source})
            mapping.append({"start": start, "end": start + len(new), "label": span.label,
                            "original": text[span.start: span.end], "replacement": new})
            shift += len(new) - (span.end - span.start)
            at = span.end
        out.append(text[at:])
        return RedactResult("".join(out), replacements, mapping)


class _Document:
    """The replacements of one document's spans: equal values get equal replacements, people grouped."""

    def __init__(self, redactor: Redactor, text: str, spans: list[Span]):
        self.r, self.s = redactor, redactor.settings
        self.text, self.spans = text, spans
        self.numbers: dict[str, dict[str, int]] = {}      # label -> value key -> placeholder number
        self.tokens: dict[tuple[str, str], str] = {}      # (kind, plain name) -> surrogate name
        self.values: dict[tuple[str, str], str] = {}      # (label, value key) -> surrogate
        self.used: set[str] = set()
        self.genders: dict[int, str] = {}                 # person -> "f" | "m", from a title
        self.day_shift = 0

    def replacements(self) -> list[str]:
        """One replacement per span; people's mentions are replaced longest first, so that a partial mention
        (``Durand``, ``Mme D.``) reuses the names its full mention drew."""
        mentions = [self.text[s.start: s.end] for s in self.spans]
        people = [i for i, s in enumerate(self.spans) if s.label == PERSON]
        groups = group_people([mentions[i] for i in people], [self.spans[i].start for i in people])
        person = dict(zip(people, groups, strict=True))
        order = sorted(range(len(self.spans)), key=lambda i: (i not in person, -len(name_tokens(mentions[i]))
                                                              if i in person else 0, i))
        canon: dict[int, str] = {}
        for i in order:
            if i in person:
                canon.setdefault(person[i], value_key(PERSON, mentions[i]))
                gender = gender_of(name_tokens(mentions[i]))
                if gender is not None:
                    self.genders.setdefault(person[i], gender)
        self.day_shift = self._day_shift()
        out: dict[int, str] = {}
        for i in order:
            key = canon[person[i]] if i in person else value_key(self.spans[i].label, mentions[i])
            out[i] = self._one(self.spans[i], mentions[i], key, person.get(i))
        return [out[i] for i in range(len(self.spans))]

    def _one(self, span: Span, original: str, key: str, person: int | None) -> str:
        label, mode = span.label, self.s.mode
        if label == "DATE" and (self.s.dates == "shift" or mode == "surrogate"):
            from nerkd.redact.dates import shift_date

            shifted = shift_date(original, self.day_shift)
            if shifted is not None:
                return shifted
        if mode == "mask":
            return f"[{label}]"
        if mode == "placeholder":
            return f"[{label}_{self._number(label, key if person is None else f'person {person}', key)}]"
        return self._surrogate(span, original, key, person)

    def _number(self, label: str, local: str, key: str) -> str:
        if self.r.key is not None:
            return self.r.chooser.code(label, key)
        numbers = self.numbers.setdefault(label, {})
        return str(numbers.setdefault(local, len(numbers) + 1))

    def _day_shift(self) -> int:
        """Days every date of the document moves by: 1..shift_days, forwards or backwards; with a key, one shift
        for the key (intervals between documents kept), else drawn per document."""
        n = self.s.shift_days
        rng = random.Random(self.r.chooser.seed("date shift"))
        return rng.choice([d for d in range(-n, n + 1) if d])

    def _surrogate(self, span: Span, original: str, key: str, person: int | None) -> str:
        from nerkd.redact import surrogates as fake

        label, locale = span.label, self.s.locale
        if label == PERSON:
            return self._person(original, self.genders.get(person), key)
        cached = self.values.get((label, key))
        if cached is not None:
            return cached
        for attempt in range(20):
            seed = self.r.chooser.seed(label, key, str(attempt))
            rng = random.Random(seed)
            if label == "LOC":
                new = fake.fake_place(original, locale, seed)
            elif label == "ORG":
                new = fake.fake_org(original, locale, seed)
            else:
                new = _identifier(label, original, locale, seed, rng)
            if (plain(new) != plain(original) or label == "ORG" and new == original) and new not in self.used:
                break
        self.values[(label, key)] = new
        self.used.add(new)
        return new

    def _person(self, mention: str, gender: str | None, names_of: str) -> str:
        """The mention with each name replaced by its surrogate name (case shape kept), initials by the
        surrogate's initial, titles and particles kept; ``gender``: the person's, from a title; ``names_of``: the
        person's names (plain, the longest mention's)."""
        tokens = name_tokens(mention)
        names = [t for t in tokens if t.name]
        caps = any(len(t.norm) > 1 and t.raw.rstrip(".").isupper() for t in names)
        out, at = [], 0
        for t in tokens:
            out.append(mention[at: t.start])
            at = t.end
            if t.initial:
                out.append(self._initial(t.norm, names_of.split()) + t.raw[1:])
            elif t.title or t.norm in PARTICLES:
                out.append(t.raw)
            else:
                out.append(self._name(t.raw, t.norm, _is_first(t, names, caps, self.s.locale), gender))
        out.append(mention[at:])
        return "".join(out)

    def _initial(self, letter: str, names: list[str]) -> str:
        """The initial of the surrogate of the person's name starting with ``letter`` (``names``: the person's
        names, plain), else of any such name of the document, else a drawn one."""
        from nerkd.redact.surrogates import name_pool

        by_norm = {norm: new for (_, norm), new in self.tokens.items()}
        for norm in [n for n in names if n in by_norm] + list(by_norm):
            if norm.startswith(letter):
                return by_norm[norm][0]
        rng = random.Random(self.r.chooser.seed("initial", letter))
        return rng.choice([n for n, p in name_pool(self.s.locale, "last", None) if p[:1] != letter])[0]

    def _name(self, raw: str, norm: str, first: bool, gender: str | None) -> str:
        from nerkd.redact.surrogates import known_first_names, name_pool, shaped

        kind = "first" if first else "last"
        new = self.tokens.get((kind, norm)) or self.tokens.get(("last" if first else "first", norm))
        if new is None:
            if first:
                gender = gender or known_first_names(self.s.locale).get(norm)
            pool = name_pool(self.s.locale, kind, gender if first else None)
            rng = random.Random(self.r.chooser.seed(PERSON, kind, (gender or "") if first else "", norm))
            taken = set(self.tokens.values())
            new = rng.choice([n for n, p in pool if p != norm and n not in taken] or [n for n, _ in pool])
            self.tokens[(kind, norm)] = new
        return shaped(new, raw.rstrip("."))


def _is_first(token, names: list, caps: bool, locale: str) -> bool:
    """A first name: not in capitals where the mention writes its surname in capitals (``DURAND Nadia``), not the
    last name of a mention of several names, and, alone, one of the locale's first names."""
    from nerkd.redact.surrogates import known_first_names

    if caps:
        return not token.raw.rstrip(".").isupper()
    if len(names) == 1:
        return token.norm in known_first_names(locale)
    return token is not names[-1]


def _identifier(label: str, original: str, locale: str, seed: int, rng: random.Random) -> str:
    from nerkd.redact import surrogates as fake

    if label == "PHONE":
        return fake.fake_phone(original, rng)
    if label == "EMAIL":
        return fake.fake_email(locale, seed)
    if label == "URL":
        return fake.fake_url(original, locale, seed)
    if label == "NIR":
        return fake.fake_nir(original, rng)
    if label == "IBAN":
        return fake.fake_iban(original, rng)
    if label in ("SIREN", "SIRET"):
        return fake.fake_siren(original, rng, label == "SIRET")
    if any(c.isdigit() for c in original):
        return fake.fake_code(original, rng)
    return f"[{label}]"
