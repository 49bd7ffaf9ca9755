"""Noto Color Emoji pictures captioned with their Unicode names (several languages).

Pictures: Debian's ``fonts-noto-color-emoji`` (``NotoColorEmoji.ttf``, a bitmap
font: size 109 only) drawn by Pillow with ``embedded_color=True`` on a 136x128
transparent canvas. Captions: the PyPI ``emoji`` package's ``EMOJI_DATA`` names
(``:thumbs_up_medium_skin_tone:`` -> ``thumbs up medium skin tone``) in English,
German, French, Spanish, Italian, Portuguese and more. Only fully-qualified
entries up to Emoji 15.1 are kept: newer ones draw empty or in pieces with this
font (about 3,773). A picture that draws empty is skipped and counted in the card.

Every variant of one base emoji (skin tones, genders, "man"/"woman"/"person"
forms, hand pairs) shares a split: an emoji's keys are its code points with
skin-tone, gender, ZWJ and variation selectors removed (man/woman/person,
boy/girl/child and old man/old woman/older person folded together) and its
English name with skin tones and gender words removed; emoji sharing any key are
joined (union-find) and the group is split by a SHA-1 of its name.
"""

from __future__ import annotations

import re
from pathlib import Path

from transduce.config import TransduceError
from transduce.data.sources.tuxpaint import make_caption_sample, write_caption_dataset

FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
FONT_SIZE = 109  # the only size of the bitmap font
CANVAS = (136, 128)
APT_PACKAGE = "fonts-noto-color-emoji"
MAX_EMOJI_VERSION = 15.1
LANGUAGES = ("en", "de", "fr", "es", "it", "pt")
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "samples" / "emoji"
LICENCE = (
    "Pictures: Noto Color Emoji (Debian fonts-noto-color-emoji, "
    "https://github.com/googlefonts/noto-emoji), SIL Open Font License 1.1 (the "
    "images in the font's source repository are Apache-2.0). Captions: emoji names from "
    "the Unicode CLDR via the PyPI package 'emoji' (BSD licence; CLDR data under the "
    "Unicode licence)."
)

_SKIN_TONES = {chr(c) for c in range(0x1F3FB, 0x1F400)}
_DROP = _SKIN_TONES | {"\u200d", "\ufe0f", "\u2640", "\u2642"}
_FOLD = {
    "\U0001f468": "\U0001f9d1",  # man -> person
    "\U0001f469": "\U0001f9d1",  # woman -> person
    "\U0001f466": "\U0001f9d2",  # boy -> child
    "\U0001f467": "\U0001f9d2",  # girl -> child
    "\U0001f474": "\U0001f9d3",  # old man -> older person
    "\U0001f475": "\U0001f9d3",  # old woman -> older person
}
_TONE_WORDS = re.compile(r"\b(?:medium-light|medium-dark|light|medium|dark) skin tone\b")
_GENDER_WORDS = re.compile(
    r"\b(?:man|woman|person|men|women|people|boy|girl|child|old|older|adult)\b"
)


def caption_of(name: str) -> str:
    """``:thumbs_up_medium_skin_tone:`` -> ``thumbs up medium skin tone``."""
    return " ".join(name.strip(":").replace("_", " ").split())


def codepoint_key(emoji: str) -> str:
    """Code points with skin tone, gender, ZWJ and VS16 removed, genders folded."""
    kept = [_FOLD.get(ch, ch) for ch in emoji if ch not in _DROP]
    return "cp:" + "-".join(f"{ord(ch):x}" for ch in kept)


def name_key(english: str) -> str | None:
    """English caption with skin tones and gender words removed; None if nothing is left."""
    text = _TONE_WORDS.sub(" ", caption_of(english).lower())
    text = _GENDER_WORDS.sub(" ", text)
    text = " ".join(text.replace(",", " ").replace(":", " ").split())
    return "name:" + text if text else None


def group_variants(entries: list[tuple[str, str]]) -> dict[str, str]:
    """``[(emoji, english name)]`` -> ``{emoji: group}``: variants share a group.

    The group is the shortest English caption of its members (ties: alphabetical),
    a readable name such as ``thumbs up``.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for emoji, english in entries:
        node = "emoji:" + emoji
        union(node, codepoint_key(emoji))
        key = name_key(english)
        if key:
            union(node, key)
    members: dict[str, list[tuple[int, str]]] = {}
    for emoji, english in entries:
        cap = caption_of(english).lower()
        members.setdefault(find("emoji:" + emoji), []).append((len(cap), cap))
    names = {root: min(caps)[1] for root, caps in members.items()}
    return {emoji: names[find("emoji:" + emoji)] for emoji, _ in entries}


def emoji_entries(max_version: float = MAX_EMOJI_VERSION) -> list[tuple[str, dict]]:
    """Fully-qualified ``(emoji, data)`` entries up to ``max_version``, names loaded
    for :data:`LANGUAGES`."""
    try:
        import emoji as emoji_pkg
    except ImportError:  # pragma: no cover - a declared dependency
        raise TransduceError("the 'emoji' package is missing: pip install emoji") from None
    for lang in LANGUAGES[1:]:
        emoji_pkg.config.load_language(lang)
    fq = emoji_pkg.STATUS["fully_qualified"]
    return [
        (e, d)
        for e, d in emoji_pkg.EMOJI_DATA.items()
        if d.get("status") == fq and d.get("E", 99) <= max_version
    ]


def render(emoji: str, font) -> object:
    """Draw one emoji on a transparent 136x128 canvas (RGBA Pillow image)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", CANVAS, (0, 0, 0, 0))
    ImageDraw.Draw(image).text((0, 0), emoji, font=font, embedded_color=True)
    return image


def load_font(path: Path = FONT):
    from PIL import ImageFont

    if not Path(path).is_file():
        raise TransduceError(
            f"the emoji font {path} is missing; install it with "
            f"`apt-get install {APT_PACKAGE}` (Debian/Ubuntu), then run this again"
        )
    try:
        return ImageFont.truetype(str(path), FONT_SIZE)
    except OSError as e:
        raise TransduceError(f"cannot load the emoji font {path}: {e}") from None


def prepare_emoji(out_dir: Path, font_path: Path = FONT) -> dict:
    """Render and caption the emoji into ``out_dir``; return the card."""
    font = load_font(font_path)
    entries = emoji_entries()
    groups = group_variants([(e, d["en"]) for e, d in entries])
    items, images, empty = [], {}, []
    for e, d in entries:
        image = render(e, font)
        if image.getbbox() is None:
            empty.append(e)
            continue
        item_id = "-".join(f"{ord(ch):x}" for ch in e)
        images[item_id] = image
        captions = {lang: [caption_of(d[lang])] for lang in LANGUAGES if d.get(lang)}
        items.append({"id": item_id, "group": groups[e], "captions": captions, "emoji": e})

    def write(item: dict, path: Path) -> None:
        images[item["id"]].save(path, optimize=True)

    card = {
        "name": "emoji",
        "source": f"{font_path} (Debian {APT_PACKAGE}) drawn with Pillow at size {FONT_SIZE} "
        f"on {CANVAS[0]}x{CANVAS[1]}; captions from the PyPI emoji package's EMOJI_DATA, "
        f"fully-qualified entries up to Emoji {MAX_EMOJI_VERSION}",
        "licence": LICENCE,
        "drawn_empty_skipped": len(empty),
    }
    return write_caption_dataset(out_dir, items, write, card, 50, 50)


SAMPLE_README = """# Emoji sample

A sample of `transduce data prepare emoji`, for offline tests and demos: emoji of
Noto Color Emoji (Debian `fonts-noto-color-emoji`) drawn by Pillow (size 109 on a
136x128 transparent canvas), downscaled to 64 px (256-colour palette PNG with alpha),
captioned with their Unicode CLDR names in English, German, French and Spanish (from
the PyPI package `emoji`). All variants of one base emoji (skin tones, genders) are in
the same split.

Licences: the pictures come from Noto Color Emoji, SIL Open Font License 1.1
(https://github.com/googlefonts/noto-emoji); the names are Unicode CLDR data (Unicode
licence) as packaged by `emoji` (BSD). Regenerate with
`transduce.data.sources.emoji.make_sample(prepared_dir)`.
"""


def make_sample(prepared: Path, sample_dir: Path = SAMPLE_DIR) -> dict:
    counts = {"train": 400, "valid": 50, "test": 50}
    return make_caption_sample(prepared, sample_dir, counts, 64, SAMPLE_README)


__all__ = [
    "caption_of",
    "codepoint_key",
    "group_variants",
    "make_sample",
    "name_key",
    "prepare_emoji",
    "render",
]
