"""French dates in notes: found by pattern, validated as calendar dates, and shifted with their format kept.

Recognised: ``12/03/2021``, ``12-03-21``, ``12.03.2021``, ``2021-03-12`` and ``12 mars 2021``,
``1er janvier``, ``lundi 3 mai 2021``, ``mars 2021`` (month names with or without accents, any case).
:func:`shift_date` moves one by a number of days and writes it back the same way: separators, zero
padding, two- or four-digit year, month name case and accents, weekday recomputed; a date without a
year is shifted within a non-leap year.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterator

MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
          "novembre", "décembre")
DAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
_MONTH_RE = "janvier|f[ée]vrier|mars|avril|mai|juin|juillet|ao[uû]t|septembre|octobre|novembre|d[ée]cembre"
_DAY_RE = "|".join(DAYS)

NUMERIC = re.compile(r"(?<![\w/.-])(?P<d>\d{1,2})(?P<sep>[/.-])(?P<m>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})(?![\w/-])")
ISO = re.compile(r"(?<![\w/.-])(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})(?![\w/-])")
TEXTUAL = re.compile(
    rf"(?<!\w)(?:(?P<wd>{_DAY_RE})\s+)?(?P<d>1er|\d{{1,2}})\s+(?P<mn>{_MONTH_RE})(?:\s+(?P<y>\d{{4}}))?(?!\w)",
    re.IGNORECASE)
MONTH_YEAR = re.compile(rf"(?<!\w)(?P<mn>{_MONTH_RE})\s+(?P<y>\d{{4}})(?!\w)", re.IGNORECASE)
NO_YEAR = 2001   # dates without a year are shifted within this (non-leap) year


def _plain(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", s.lower()) if unicodedata.category(c) != "Mn")


_MONTH_NO = {_plain(m): i + 1 for i, m in enumerate(MONTHS)}


def _year(raw: str) -> int:
    if len(raw) == 4:
        return int(raw)
    yy = int(raw)
    return 2000 + yy if yy <= dt.date.today().year % 100 else 1900 + yy


def _parse(m: re.Match) -> dt.date | None:
    g = m.groupdict()
    day = 1 if (g.get("d") or "").lower() == "1er" else int(g["d"]) if g.get("d") else 15
    month = int(g["m"]) if g.get("m") else _MONTH_NO[_plain(g["mn"])]
    year = _year(g["y"]) if g.get("y") else NO_YEAR
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def find_dates(text: str) -> Iterator[tuple[int, int, re.Match]]:
    """``(start, end, match)`` of every valid date of ``text`` (overlaps: the first pattern's, longest)."""
    taken: list[tuple[int, int]] = []
    for pattern in (TEXTUAL, NUMERIC, ISO, MONTH_YEAR):
        for m in pattern.finditer(text):
            if _parse(m) is None or any(m.start() < b and a < m.end() for a, b in taken):
                continue
            taken.append((m.start(), m.end()))
            yield m.start(), m.end(), m


def match_date(text: str) -> re.Match | None:
    """The date pattern that matches the whole of ``text`` (a span found by :func:`find_dates`), or None."""
    for pattern in (TEXTUAL, NUMERIC, ISO, MONTH_YEAR):
        m = pattern.fullmatch(text)
        if m is not None and _parse(m) is not None:
            return m
    return None


def _cased(word: str, like: str) -> str:
    if like.isupper():
        return word.upper()
    return word.capitalize() if like[:1].isupper() else word


def _accented(month: str, like: str) -> str:
    """The month's name, without accents when ``like`` (the original name) was written without its own."""
    canonical = MONTHS[_MONTH_NO[_plain(like)] - 1]
    written_plain = _plain(canonical) != canonical and like.lower() == _plain(canonical)
    return _plain(month) if written_plain else month


def shift_date(text: str, days: int) -> str | None:
    """``text`` (a whole date) moved by ``days``, written as it was written; None when it is not a date."""
    m = match_date(text)
    if m is None:
        return None
    new = _parse(m) + dt.timedelta(days=days)
    g = m.groupdict()
    if "sep" in g:          # numeric
        y = f"{new.year:04d}" if len(g["y"]) == 4 else f"{new.year % 100:02d}"
        return f"{new.day:0{len(g['d'])}d}{g['sep']}{new.month:0{len(g['m'])}d}{g['sep']}{y}"
    if "mn" not in g:       # ISO
        return f"{new.year:04d}-{new.month:02d}-{new.day:02d}"
    out = text[: m.start("mn")] if m.re is MONTH_YEAR else ""
    if g.get("wd"):
        out = _cased(DAYS[new.weekday()], g["wd"]) + text[m.end("wd"): m.start("d")]
    if g.get("d"):
        out += ("1er" if new.day == 1 else str(new.day)) + text[m.end("d"): m.start("mn")]
    out += _cased(_accented(MONTHS[new.month - 1], g["mn"]), g["mn"])
    if g.get("y"):
        out += text[m.end("mn"): m.start("y")] + str(new.year)
    return out
