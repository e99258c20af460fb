"""Realistic French fake values (``faker``, fr_FR by default) and fake identifiers of the same format.

Every choice draws from a seed given by :class:`Chooser`: with a secret key, ``HMAC-SHA256(key, label | normal
form of the value)``, so one value gets one surrogate in every document and every run; without a key, a
random number from a generator seeded once per run from the operating system, so surrogates differ between
runs and say nothing about the value (a surrogate is never derived from an unkeyed hash of the value).
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
import secrets
import string
import threading
from functools import lru_cache

from nerkd.errors import require_extra

ORG_KIND = re.compile(
    r"^(?P<head>(?:(?:l['’]|la |le |les )\s*)?(?:centre hospitalier(?: universitaire| r[ée]gional)?|centre social|"
    r"centre m[ée]dico[- ]psychologique|h[ôo]pital|clinique|chu|chru|chr|ch|ccas|cias|ehpad|mairie|caf|cpam|mdph|"
    r"msa|carsat|pmi|cmpp|cmp|udaf|ssiad|saad|mds|maison d[ée]partementale(?: des solidarit[ée]s)?|association|"
    r"[ée]cole|coll[èe]ge|lyc[ée]e|r[ée]sidence|foyer|p[ôo]le emploi|france travail|mission locale|"
    r"conseil d[ée]partemental|tribunal(?: judiciaire)?|pharmacie|cabinet)\b)"
    r"(?P<link>\s+(?:de la|de l['’]|de|du|des|d['’])\s*|\s+)?(?P<rest>.*)$", re.IGNORECASE | re.DOTALL)
STREET = re.compile(r"\b(?:rue|avenue|av\.?|bd|boulevard|chemin|place|all[ée]e|impasse|route|quai|cours|square|"
                    r"r[ée]sidence|lieu[- ]dit|faubourg|cit[ée])\b", re.IGNORECASE)


def require_surrogates() -> None:
    require_extra("redact", "redact's surrogate mode", ("faker", "stdnum"))


_local = threading.local()


def faker_for(locale: str):
    """This thread's Faker of ``locale``: each choice seeds it then draws, so threads (a server's) must not share
    one, or a keyed surrogate could come from another thread's seed."""
    from faker import Faker

    fakers = _local.__dict__.setdefault("fakers", {})
    if locale not in fakers:
        fakers[locale] = Faker(locale)
    return fakers[locale]


class Chooser:
    """Seeds for surrogate choices: keyed (HMAC-SHA256) or random per run (see module doc)."""

    def __init__(self, key: bytes | None = None, seed: int | None = None):
        self.key = key
        self.rng = random.Random(secrets.randbits(64) if seed is None else seed)

    def seed(self, *parts: str) -> int:
        if self.key is None:
            return self.rng.getrandbits(64)
        return int.from_bytes(self.digest(*parts)[:8], "big")

    def digest(self, *parts: str) -> bytes:
        assert self.key is not None
        return hmac.new(self.key, "\x1f".join(parts).encode("utf-8"), hashlib.sha256).digest()

    def code(self, *parts: str) -> str:
        """8 hex digits of the keyed hash (placeholders with a key)."""
        return self.digest("placeholder", *parts).hex()[:8]


def shaped(new: str, like: str) -> str:
    """``new`` with the case shape of ``like``: all capitals, all lower case, or as it is."""
    letters = [c for c in like if c.isalpha()]
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return new.upper()
    if letters and all(c.islower() for c in letters):
        return new.lower()
    return new


def first_names(locale: str, gender: str | None) -> tuple[str, ...]:
    p = _person(locale)
    if gender == "f":
        return tuple(p.first_names_female)
    if gender == "m":
        return tuple(p.first_names_male)
    return tuple(p.first_names_female) + tuple(p.first_names_male)


def last_names(locale: str) -> tuple[str, ...]:
    return tuple(_person(locale).last_names)


@lru_cache(maxsize=16)
def name_pool(locale: str, kind: str, gender: str | None) -> tuple[tuple[str, str], ...]:
    """``(name, plain form)`` of the locale's first names (of ``gender``, else all) or last names, sorted."""
    from nerkd.redact.normalise import plain

    names = first_names(locale, gender) if kind == "first" else last_names(locale)
    return tuple(sorted({(n, plain(n)) for n in names}))


@lru_cache(maxsize=4)
def _person(locale: str):
    fake = faker_for(locale)
    return next(p for p in fake.providers if ".person." in type(p).__module__)


@lru_cache(maxsize=4)
def known_first_names(locale: str) -> dict[str, str]:
    """Plain form -> "f" or "m", for faker's first names of ``locale``."""
    from nerkd.redact.normalise import plain

    out = {plain(n): "m" for n in first_names(locale, "m")}
    out.update({plain(n): "f" for n in first_names(locale, "f")})
    return out


def seeded(locale: str, seed: int):
    fake = faker_for(locale)
    fake.seed_instance(seed)
    return fake


def fake_place(original: str, locale: str, seed: int) -> str:
    """A street address for an address (a street name when it has no number), else a town."""
    fake = seeded(locale, seed)
    if STREET.search(original):
        return shaped(fake.street_address() if any(c.isdigit() for c in original) else fake.street_name(), original)
    return shaped(fake.city(), original)


def fake_org(original: str, locale: str, seed: int) -> str:
    """An organisation of the same kind: its kind word kept (``CCAS de Lyon`` -> ``CCAS de <town>``,
    ``Hôpital Necker`` -> ``Hôpital <name>``), a company name otherwise."""
    fake = seeded(locale, seed)
    m = ORG_KIND.match(original)
    if m is None:
        return shaped(fake.company(), original)
    rest = m.group("rest")
    if not rest.strip():
        return original
    link = m.group("link") or ""
    new = shaped(fake.city() if link.strip() else fake.last_name(), rest)
    if link.strip().lower() == "de" and new[:1].lower() in "aeiouyéèêh":
        link = link[: link.lower().index("de")] + link.strip()[0] + "'"
    return m.group("head") + link + new


def fake_digits(original: str, rng: random.Random, keep: int = 0) -> str:
    """``original`` with every digit after the first ``keep`` digits drawn at random (other characters kept)."""
    out, seen = [], 0
    for c in original:
        if c.isdigit():
            seen += 1
            out.append(c if seen <= keep else str(rng.randrange(10)))
        else:
            out.append(c)
    return "".join(out)


def laid_out(chars: str, like: str) -> str:
    """``chars`` (letters and digits) put in the places of ``like``'s letters and digits (spaces, dots kept)."""
    it = iter(chars)
    return "".join(next(it) if c.isalnum() else c for c in like)


def fake_phone(original: str, rng: random.Random) -> str:
    """Same format; the country code (``+33``, ``0033``) or the national prefix and first digit (``06``) kept."""
    s = original.lstrip()
    keep = 3 if s.startswith("+") else 4 if s.startswith("00") else 2
    return fake_digits(original, rng, keep)


def fake_nir(original: str, rng: random.Random) -> str:
    """A NIR of the same sex digit and layout, with a valid key (``stdnum.fr.nir``)."""
    from stdnum.fr import nir

    body = (original.strip()[0] + f"{rng.randrange(100):02d}{rng.randrange(1, 13):02d}"
            f"{rng.choice([d for d in range(1, 96) if d != 20]):02d}{rng.randrange(1, 990):03d}"
            f"{rng.randrange(1, 1000):03d}")
    return laid_out(body + nir.calc_check_digits(body), original)


def fake_iban(original: str, rng: random.Random) -> str:
    """An IBAN of the same country and layout with valid check digits (``stdnum.iban``)."""
    from stdnum import iban

    compact = iban.compact(original)
    for _ in range(100):
        bban = "".join(str(rng.randrange(10)) if c.isdigit() else rng.choice(string.ascii_uppercase)
                       for c in compact[4:])
        number = compact[:2] + iban.calc_check_digits(compact[:2] + "00" + bban) + bban
        if iban.is_valid(number):
            return laid_out(number, original)
    return laid_out(compact[:2] + fake_digits(compact[2:], rng), original)


def fake_siren(original: str, rng: random.Random, siret: bool) -> str:
    """A SIREN (or SIRET) with valid Luhn keys, in the same layout."""
    from stdnum import luhn

    siren = "".join(str(rng.randrange(10)) for _ in range(8))
    siren += luhn.calc_check_digit(siren)
    if not siret:
        return laid_out(siren, original)
    body = siren + "".join(str(rng.randrange(10)) for _ in range(4))
    return laid_out(body + luhn.calc_check_digit(body), original)


def fake_email(locale: str, seed: int) -> str:
    """An address at a reserved domain (example.com/.net/.org): it reaches nobody."""
    return seeded(locale, seed).safe_email()


def fake_url(original: str, locale: str, seed: int) -> str:
    fake = seeded(locale, seed)
    head = re.match(r"(?i)https?://(?:www\.)?|www\.", original)
    return (head.group(0) if head else "") + f"example.{fake.random_element(('com', 'org', 'net'))}/{fake.uri_path()}"


def fake_code(original: str, rng: random.Random) -> str:
    """A user pattern's match (a file number): digits drawn at random, and the letters of a word that also has
    digits (``AB123`` -> ``QX907``); words of letters only (``IPP``) kept."""
    def word(w: str) -> str:
        if not any(c.isdigit() for c in w):
            return w
        return "".join(str(rng.randrange(10)) if c.isdigit() else rng.choice(
            string.ascii_uppercase if c.isupper() else string.ascii_lowercase) if c.isalpha() else c for c in w)
    return "".join(word(w) for w in re.split(r"(\s+)", original))
