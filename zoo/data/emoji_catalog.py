"""The emoji catalogue: names, groups, concepts and families from Unicode's ``emoji-test.txt``.

Zero-shot evaluation on held-out emoji is only honest if nothing *nearly identical* to a held-out
emoji was trained on. Two levels of merging make that checkable:

* **concept** — the name without its skin-tone and hair-style components (the ``component`` lines of
  the file itself), so "cook: medium skin tone" and "cook" are one concept.
* **family** — the concept without man/woman/person (men/women/people, boy/girl/child), so "man
  cook", "woman cook" and "cook" are one family. A bare person with an appearance qualifier ("man:
  beard", "woman: blond hair") belongs to the ``person`` family. A few gendered word pairs that are
  not separate words (merman/mermaid) are aliased by hand.

Splits assign whole families, never single emoji.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.errors import DataError

_LINE = re.compile(r"^(?P<cps>[0-9A-Fa-f ]+?)\s*;\s*(?P<status>[\w-]+)\s*#\s*\S+\s+E\d+\.\d+\s+(?P<name>.+)$")
_PERSON_WORDS = ("man", "woman", "person", "men", "women", "people", "boy", "girl", "child")
GENDER_WORDS = frozenset(
    [*_PERSON_WORDS, "man’s", "woman’s", "men’s", "women’s", "man's", "woman's", "men's", "women's"]
)
#: Gendered variants that differ inside a word, not by a separate word.
FAMILY_ALIASES = {
    "older": "old",
    "merman": "merperson",
    "mermaid": "merperson",
    "princess": "prince",
    "mrs. claus": "santa claus",
    "mx claus": "santa claus",
}
PERSON_FAMILY = "person"


@dataclass(frozen=True)
class EmojiEntry:
    """One fully-qualified emoji from ``emoji-test.txt`` with its derived concept and family."""

    codepoints: str
    name: str
    group: str
    subgroup: str
    concept: str
    family: str

    @property
    def text(self) -> str:
        """The emoji as a string, ready to render."""
        return "".join(chr(int(cp, 16)) for cp in self.codepoints.split())


def concept_of(name: str, components: Iterable[str]) -> str:
    """``name`` without skin-tone/hair-style qualifiers: ``"man: red hair"`` → ``"man"``."""
    base, sep, qualifiers = name.partition(": ")
    if not sep:
        return name
    drop = set(components)
    kept = [q for q in qualifiers.split(", ") if q not in drop]
    return f"{base}: {', '.join(kept)}" if kept else base


def _strip_gender(text: str) -> str:
    """Lower-case ``text`` without gendered person words (and an ``and`` joining two of them)."""
    words = [w.strip(",") for w in text.lower().split()]
    gendered = [w in GENDER_WORDS for w in words]
    kept = []
    for i, word in enumerate(words):
        before = i > 0 and gendered[i - 1]
        after = i + 1 < len(words) and gendered[i + 1]
        joins_gendered = word == "and" and (before or after)
        if not gendered[i] and not joins_gendered:
            kept.append(word)
    return " ".join(kept)


def family_of(concept: str) -> str:
    """The gender-neutral family of a concept: ``"woman cook"`` → ``"cook"``, ``"kiss: man, man"`` → ``"kiss"``."""
    base, sep, qualifiers = concept.partition(": ")
    base_key = _strip_gender(base)
    if not base_key:
        return PERSON_FAMILY
    qualifier_key = _strip_gender(qualifiers) if sep else ""
    key = f"{base_key}: {qualifier_key}" if qualifier_key else base_key
    return FAMILY_ALIASES.get(key, key)


@dataclass(frozen=True)
class EmojiCatalog:
    """The parsed file: its fully-qualified emoji and its component names (skin tones, hair styles)."""

    entries: list[EmojiEntry]
    components: list[str]


def parse_emoji_test(path: Path) -> EmojiCatalog:
    """Every ``fully-qualified`` emoji in ``path``, in the file's (CLDR) order, and the components.

    Raises:
        DataError: The file holds no fully-qualified emoji (not an ``emoji-test.txt``).
    """
    group = subgroup = ""
    components: list[str] = []
    rows: list[tuple[str, str, str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif (match := _LINE.match(line)) is not None:
            if match["status"] == "component":
                components.append(match["name"])
            elif match["status"] == "fully-qualified":
                rows.append((" ".join(match["cps"].split()), match["name"].strip(), group, subgroup))
    if not rows:
        raise DataError(f"{path}: no fully-qualified emoji found; is this Unicode's emoji-test.txt?")
    entries = []
    for codepoints, name, grp, sub in rows:
        concept = concept_of(name, components)
        entries.append(EmojiEntry(codepoints, name, grp, sub, concept, family_of(concept)))
    return EmojiCatalog(entries, components)


def heldout_families(entries: Sequence[EmojiEntry], fraction: float, seed: int) -> set[str]:
    """Families to hold out: shuffled by ``seed``, taken while the held-out images stay ≤ ``fraction``.

    Counting images rather than families keeps the held-out share near ``fraction`` even though
    families range from one emoji to a hundred skin-tone combinations.
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"emoji: heldout_fraction must be in (0, 1), got {fraction}")
    return families_within([e.family for e in entries], fraction, seed)


def families_within(image_families: Sequence[str], fraction: float, seed: int) -> set[str]:
    """The rule of :func:`heldout_families` on each image's family (validation splits of ``train`` use it too)."""
    sizes = Counter(image_families)
    families = list(sizes)  # first-appearance order, so the shuffle is reproducible
    target = fraction * len(image_families)
    held: set[str] = set()
    count = 0
    for i in np.random.default_rng(seed).permutation(len(families)):
        family = families[i]
        if count + sizes[family] <= target:
            held.add(family)
            count += sizes[family]
    return held


_NO_ARTICLE = frozenset(["the", "men", "women", "people"])  # already determined, or plural


def _article(phrase: str) -> str:
    if phrase[:1].isupper() or phrase.split(" ", 1)[0] in _NO_ARTICLE:
        return phrase
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def describe(name: str, components: Iterable[str]) -> str:
    """A natural phrase for a name: ``"man cook: dark skin tone"`` → ``"a man cook with dark skin tone"``."""
    base, sep, qualifiers = name.partition(": ")
    if not sep:
        return _article(name)
    if base == "flag":
        return f"the flag of {qualifiers}"
    comps = set(components)
    parts = qualifiers.split(", ")
    others = [q for q in parts if q not in comps]
    phrase = base + (f" ({', '.join(others)})" if others else "")
    tones = [q for q in parts if q in comps]
    return _article(phrase + (f" with {' and '.join(tones)}" if tones else ""))


def captions_for(entry: EmojiEntry, components: Iterable[str]) -> list[str]:
    """Several captions: plain, group-prefixed and subgroup-suffixed phrasings of the name."""
    group = re.sub(r"[^a-z0-9]+", "-", entry.group.lower()).strip("-")
    return [
        f"an emoji of {describe(entry.name, components)}",
        f"{_article(group)} emoji: {entry.name}",
        f"{entry.name} ({entry.subgroup})",
    ]
