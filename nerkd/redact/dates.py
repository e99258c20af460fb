"""French dates in notes: found by pattern, validated as calendar dates, and shifted with their format kept.

Recognised: ``12/03/2021``, ``12-03-21``, ``12.03.2021``, ``2021-03-12`` and ``12 mars 2021``,
``1er janvier``, ``lundi 3 mai 2021``, ``mars 2021`` (month names with or without accents, any case),
ranges as one date (``10 au 24 août``, ``24 et 31 décembre``, ``1er janvier au 30 juin``) and numeric dates
without a year (``18/01``; see :func:`_no_year_ok`: a fraction or a blood pressure is not a date). A weekday
belongs to its date only when the year is written (it is then recomputed); otherwise it stays outside.
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
RANGE = re.compile(
    rf"(?<!\w)(?P<d1>1er|\d{{1,2}})(?:\s+(?P<mn1>{_MONTH_RE})(?:\s+(?P<y1>\d{{4}}))?)?(?P<conn>\s+(?:au|et|à)\s+)"
    rf"(?P<d>1er|\d{{1,2}})\s+(?P<mn>{_MONTH_RE})(?:\s+(?P<y>\d{{4}}))?(?!\w)", re.IGNORECASE)
NO_YEAR_NUMERIC = re.compile(r"(?<![\w/.,-])(?P<d>\d{1,2})(?P<sep>[/.])(?P<m>\d{1,2})(?![\w/]|[.,-]\d)")
# a numeric day/month is a date after one of these words, or when written dd/mm; never after a measure's name
_DATE_WORD = re.compile(r"(?:\b(?:le|du|au|dès|des|depuis|jusqu['’]au|avant|après|vers|entre|et|rdv|né|née|"
                        rf"{_DAY_RE})\s*:?\s*)$", re.IGNORECASE)
_MEASURE = re.compile(r"(?:\b(?:ta|pa|tension|score|note|mmse?|eva|en|nihss|gir|glasgow|taux|ratio|sur|"
                      r"soit|environ)\s*:?\s*)$", re.IGNORECASE)
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


def _date(day: str | None, month: str | None, month_name: str | None, year: str | None) -> dt.date | None:
    d = 1 if (day or "").lower() == "1er" else int(day) if day else 15
    mo = int(month) if month else _MONTH_NO[_plain(month_name)]
    try:
        return dt.date(_year(year) if year else NO_YEAR, mo, d)
    except ValueError:
        return None


def _parse(m: re.Match) -> dt.date | None:
    """The date of a match (of a range: its last date), None when it is not a calendar date."""
    g = m.groupdict()
    last = _date(g.get("d"), g.get("m"), g.get("mn"), g.get("y"))
    return last if last is None or m.re is not RANGE or _first(m) is not None else None


def _first(m: re.Match) -> dt.date | None:
    """A range's first date: its own month and year, or the last date's."""
    g = m.groupdict()
    return _date(g["d1"], None, g["mn1"] or g["mn"], g["y1"] if g["mn1"] else g["y"])


def _no_year_ok(text: str, m: re.Match) -> bool:
    """A day/month without a year is a date after a date word (``le 5/11``, ``depuis le 18/01``) or when written
    ``dd/mm``; never after a measure's name (``TA 13/08``, ``score 12/12``), and ``2/3`` alone is a fraction."""
    before = text[max(0, m.start() - 30): m.start()]
    if _MEASURE.search(before):
        return False
    return bool(_DATE_WORD.search(before)) or (m["sep"] == "/" and len(m["d"]) == len(m["m"]) == 2)


PATTERNS = (RANGE, TEXTUAL, NUMERIC, ISO, NO_YEAR_NUMERIC, MONTH_YEAR)


def find_dates(text: str) -> Iterator[tuple[int, int, re.Match]]:
    """``(start, end, match)`` of every valid date of ``text`` (overlaps: the first pattern's, longest); a weekday
    is left out of a date without a year (``jeudi [13 novembre]``)."""
    taken: list[tuple[int, int]] = []
    for pattern in PATTERNS:
        for m in pattern.finditer(text):
            if _parse(m) is None or any(m.start() < b and a < m.end() for a, b in taken):
                continue
            if pattern is NO_YEAR_NUMERIC and not _no_year_ok(text, m):
                continue
            start = m.start("d") if pattern is TEXTUAL and m["wd"] and not m["y"] else m.start()
            taken.append((m.start(), m.end()))
            yield start, m.end(), m


def match_date(text: str) -> re.Match | None:
    """The date pattern that matches the whole of ``text`` (a span found by :func:`find_dates`), or None."""
    for pattern in PATTERNS:
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
        out = f"{new.day:0{len(g['d'])}d}{g['sep']}{new.month:0{len(g['m'])}d}"
        if "y" not in g:
            return out
        return out + g["sep"] + (f"{new.year:04d}" if len(g["y"]) == 4 else f"{new.year % 100:02d}")
    if "mn" not in g:       # ISO
        return f"{new.year:04d}-{new.month:02d}-{new.day:02d}"
    if m.re is RANGE:
        return _shift_first(text, m, _first(m) + dt.timedelta(days=days), new) + g["conn"] + _textual(text, m, new)
    return _textual(text, m, new)


def _day(date: dt.date) -> str:
    return "1er" if date.day == 1 else str(date.day)


def _textual(text: str, m: re.Match, new: dt.date) -> str:
    """A textual date (groups wd?, d?, mn, y?) written as ``m`` wrote it, with the date ``new``."""
    g = m.groupdict()
    out = text[: m.start("mn")] if m.re is MONTH_YEAR else ""
    if g.get("wd"):
        out = _cased(DAYS[new.weekday()], g["wd"]) + text[m.end("wd"): m.start("d")]
    if g.get("d"):
        out += _day(new) + text[m.end("d"): m.start("mn")]
    out += _cased(_accented(MONTHS[new.month - 1], g["mn"]), g["mn"])
    if g.get("y"):
        out += text[m.end("mn"): m.start("y")] + str(new.year)
    return out


def _shift_first(text: str, m: re.Match, first: dt.date, last: dt.date) -> str:
    """A range's first date, moved: its month (and year) written when it had them, or when the move puts it in
    another month (year) than the last date (``30 août au 13 septembre``)."""
    out = _day(first)
    name = m["mn1"] or m["mn"]
    if m["mn1"] or first.month != last.month or first.year != last.year:
        sep = text[m.end("d1"): m.start("mn1")] if m["mn1"] else " "
        out += sep + _cased(_accented(MONTHS[first.month - 1], name), name)
    if m["y1"] or (m["y"] and first.year != last.year):
        out += (text[m.end("mn1"): m.start("y1")] if m["y1"] else " ") + str(first.year)
    return out
