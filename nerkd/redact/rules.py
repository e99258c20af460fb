"""Identifiers found by rules, validated by well-kept libraries (``phonenumbers``, ``python-stdnum``).

:func:`find_identifiers` gives :class:`~nerkd.redact.spans.Span` objects (``source="rule"``) labelled
``PHONE`` (``phonenumbers``: the locale's region, e.g. FR, and international numbers written with ``+``),
``EMAIL``, ``URL``, ``NIR`` (French social-security number, ``stdnum.fr.nir``: its two-digit key must be
right), ``IBAN`` (``stdnum.iban``: mod-97 check digits and the country's format), ``SIRET`` and ``SIREN``
(``stdnum.fr.siret``/``siren``: Luhn key), ``DATE`` (:mod:`nerkd.redact.dates`, unless ``redact.dates`` is
``keep``) and the user's ``redact.patterns`` (their own labels). A digit string whose check key is wrong is
not taken. Overlapping rule spans are resolved to the longest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING

from nerkd.errors import require_extra
from nerkd.redact.spans import Span, longest_first

if TYPE_CHECKING:
    from nerkd.settings import RedactSettings

RULE_LABELS = ("PHONE", "EMAIL", "URL", "NIR", "IBAN", "SIRET", "SIREN", "DATE")

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@(?:[\w-]+\.)+[A-Za-z]{2,}(?![\w-])")
URL = re.compile(r"(?<![\w@/])(?:https?://|www\.)[^\s<>\"'«»]+", re.IGNORECASE)
# candidates, validated (and trimmed at a group boundary when the last groups are not part of the number)
NIR = re.compile(r"(?<![\w])[1-478][ .]?\d{2}[ .]?\d{2}[ .]?(?:\d{2}|2[AB])[ .]?\d{3}[ .]?\d{3}[ .]?\d{2}(?!\w)",
                 re.IGNORECASE)
IBAN = re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}(?![\w])")
SIRENS = re.compile(r"(?<![\w])\d{3}[ .]?\d{3}[ .]?\d{3}(?:[ .]?\d{5})?(?!\w)")
TRAILING = ".,;:!?)]}'\""


def find_identifiers(text: str, settings: RedactSettings) -> list[Span]:
    """Non-overlapping rule spans of ``text`` (see module doc), sorted by start."""
    if not settings.rules:
        return []
    spans = [*phones(text, settings.locale), *emails(text), *urls(text), *nirs(text), *ibans(text),
             *sirets(text), *patterns(text, settings)]
    if settings.dates != "keep":
        from nerkd.redact.dates import find_dates

        spans += [Span(a, b, "DATE", "rule") for a, b, _ in find_dates(text)]
    return longest_first(spans)


def require_rules() -> None:
    require_extra("redact", "redact's identifier rules", ("phonenumbers", "stdnum"))


def region_of(locale: str) -> str:
    """``fr_FR`` -> ``FR`` (the phone numbers' default region)."""
    return locale.replace("-", "_").split("_")[-1].upper()


# a French national number as people write it: 0 then nine digits in pairs, one separator (space, dot, dash or
# none) throughout; a number of this shape (or written with +CC) is taken when it is a *possible* number for
# phonenumbers, even when its metadata does not know the range (ARCEP's range for fiction, 06 39 98 xx xx; new
# ranges): a leak is worse than an over-redaction, and the shape keeps amounts and references out
FR_SHAPE = re.compile(r"0[1-9](?:(?P<sep>[ .-]?)\d{2})(?:(?P=sep)\d{2}){3}")
PHONE_EDGE = "+0123456789"


def phones(text: str, locale: str = "fr_FR") -> Iterator[Span]:
    """Phone numbers found by ``phonenumbers``' matcher (leniency POSSIBLE), kept when its leniency VALID takes
    them too (the locale's region, or another country's written with ``+``), or written in a phone's shape:
    ``+`` and a country code, or a French ten-digit number in pairs (:data:`FR_SHAPE`). Edges trimmed to the
    number (the matcher keeps an opening bracket)."""
    import phonenumbers

    region = region_of(locale)
    valid: set[tuple[int, int]] | None = None      # the VALID matcher runs only when a candidate needs it
    for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
        start, end = match.start, match.end
        while start < end and text[start] not in PHONE_EDGE:
            start += 1
        while end > start and not text[end - 1].isdigit():
            end -= 1
        raw = text[start:end]
        if not raw:
            continue
        if not (raw.startswith("+") or (match.number.country_code == 33 and FR_SHAPE.fullmatch(raw))):
            if valid is None:
                valid = {(m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(text, region,
                                                                                    phonenumbers.Leniency.VALID)}
            if (match.start, match.end) not in valid:
                continue
        yield Span(start, end, "PHONE", "rule")


def emails(text: str) -> Iterator[Span]:
    for m in EMAIL.finditer(text):
        yield Span(m.start(), m.end(), "EMAIL", "rule")


def urls(text: str) -> Iterator[Span]:
    for m in URL.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in TRAILING:
            end -= 1
        if end - m.start() > len("www."):
            yield Span(m.start(), end, "URL", "rule")


def _validated(text: str, pattern: re.Pattern, checks: list[tuple[str, Callable[[str], bool]]]) -> Iterator[Span]:
    """Spans of ``pattern``'s matches that a check accepts: the whole match, else its longest prefix ending at a
    space or dot (a word glued to the number by the pattern); the first check that accepts names the label."""
    for m in pattern.finditer(text):
        raw = m.group(0)
        ends = [len(raw)] + [i for i in range(len(raw) - 1, 0, -1) if raw[i] in " ." and raw[i - 1] not in " ."]
        found = next(((label, end) for end in ends for label, ok in checks if ok(raw[:end])), None)
        if found is not None:
            yield Span(m.start(), m.start() + found[1], found[0], "rule")


@lru_cache(maxsize=1)
def _stdnum():
    from stdnum import iban
    from stdnum.fr import nir, siren, siret

    return nir, iban, siren, siret


def nirs(text: str) -> Iterator[Span]:
    nir = _stdnum()[0]
    yield from _validated(text, NIR, [("NIR", lambda s: nir.is_valid(s.upper()))])


def ibans(text: str) -> Iterator[Span]:
    iban = _stdnum()[1]
    yield from _validated(text, IBAN, [("IBAN", iban.is_valid)])


def sirets(text: str) -> Iterator[Span]:
    """SIRET (14 digits) and SIREN (9 digits), Luhn keys checked."""
    _, _, siren, siret = _stdnum()

    def is_siret(s: str) -> bool:
        return len(siret.compact(s)) == 14 and siret.is_valid(s)

    def is_siren(s: str) -> bool:
        return len(siren.compact(s)) == 9 and siren.is_valid(s)

    yield from _validated(text, SIRENS, [("SIRET", is_siret), ("SIREN", is_siren)])


def patterns(text: str, settings: RedactSettings) -> Iterator[Span]:
    """The user's ``redact.patterns``: every non-empty match of each regex, labelled with its label; of a regex with
    a group named ``id``, only what that group matched (``IPP\\s*(?P<id>\\d{8})`` replaces the number, not ``IPP``)."""
    for pattern in settings.patterns:
        compiled = _compiled(pattern.regex)
        group = "id" if "id" in compiled.groupindex else 0
        for m in compiled.finditer(text):
            start, end = m.span(group)
            if end > start:
                yield Span(start, end, pattern.label, "rule")


@lru_cache(maxsize=256)
def _compiled(regex: str) -> re.Pattern:
    return re.compile(regex)
