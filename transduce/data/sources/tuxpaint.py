"""Tux Paint stamps (Debian ``tuxpaint-stamps-default``): pictures with captions.

Each stamp is ``/usr/share/tuxpaint/stamps/<category>/.../NAME.png`` beside
``NAME.txt``, whose first line is the English caption and whose other lines are
``xx.utf8=caption`` or ``xx_YY.utf8=caption`` in about 75 languages. Regional
variants (``en_GB``, ``en_AU``, ``pt_BR``...) become extra references of their
language (``en``, ``pt``), after the plain one, without duplicates.

Left out: the 165 SVG-only stamps (rendering them needs libcairo through
cairosvg), ``*_mirror.png`` (mirror images of other stamps) and six PNGs without a
``.txt``. That leaves 785 pictures.

A prepared data set (this module's and :mod:`.emoji`'s) is a folder::

    images/<id>.png
    train.jsonl valid.jsonl test.jsonl   {"id", "image": "images/<id>.png", "group",
                                          "captions": {"en": [...], "de": [...], ...}}
    card.json                             source, licence, counts, date

built in ``<out>.tmp`` and renamed into place only once complete. The split is a
SHA-1 of the item's ``group`` (here the lower-cased English caption, so stamps
with the same caption share a split).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from transduce.config import TransduceError

STAMPS_DIR = Path("/usr/share/tuxpaint/stamps")
APT_PACKAGE = "tuxpaint-stamps-default"
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "samples" / "tuxpaint"
LICENCE = (
    "Tux Paint stamps (Debian package tuxpaint-stamps-default, "
    "https://tuxpaint.org), GPL-2.0-or-later; pictures and their descriptions by the "
    "Tux Paint contributors (see /usr/share/doc/tuxpaint-stamps-default/copyright)."
)


# ----------------------------------------------------------------------------- shared


def split_of(group: str, valid_permille: int, test_permille: int) -> str:
    """Deterministic split of a group key: SHA-1 modulo 1000."""
    bucket = int(hashlib.sha1(group.encode("utf-8")).hexdigest(), 16) % 1000
    if bucket < valid_permille:
        return "valid"
    if bucket < valid_permille + test_permille:
        return "test"
    return "train"


def write_caption_dataset(
    out_dir: Path,
    items: list[dict],
    write_image: Callable[[dict, Path], None],
    card: dict,
    valid_permille: int,
    test_permille: int,
) -> dict:
    """Write images, split JSONL files and ``card.json`` into ``out_dir`` atomically.

    items: dicts with ``id``, ``group`` and ``captions`` (language -> list of strings);
    write_image(item, path) writes the item's picture to ``path``. Returns the card.
    """
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "images").mkdir(parents=True)
    splits: dict[str, list[dict]] = {"train": [], "valid": [], "test": []}
    for item in sorted(items, key=lambda x: x["id"]):
        rel = f"images/{item['id']}.png"
        write_image(item, tmp / rel)
        record = {"id": item["id"], "image": rel, "group": item["group"]}
        record["captions"] = item["captions"]
        splits[split_of(item["group"], valid_permille, test_permille)].append(record)
    for name, records in splits.items():
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        (tmp / f"{name}.jsonl").write_text(lines, encoding="utf-8")
    card = {
        **card,
        "counts": {k: len(v) for k, v in splits.items()},
        "groups": {k: len({r["group"] for r in v}) for k, v in splits.items()},
        "languages": sorted({lang for it in items for lang in it["captions"]}),
        "split": (
            f"SHA-1 of the group key mod 1000: < {valid_permille} valid, "
            f"< {valid_permille + test_permille} test, else train"
        ),
        "prepared": datetime.date.today().isoformat(),
    }
    (tmp / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    old = out_dir.with_name(out_dir.name + ".old")
    if out_dir.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(out_dir, old)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out_dir)
    if old.exists():
        shutil.rmtree(old)
    return card


def make_caption_sample(
    prepared: Path,
    sample_dir: Path,
    counts: dict[str, int],
    size: int,
    readme: str,
    languages: tuple[str, ...] = ("en", "de", "fr", "es"),
) -> dict:
    """Copy ``counts[split]`` items spread over each split into ``sample_dir``: pictures
    downscaled to ``size`` px (longest side) as 256-colour palette PNGs with alpha,
    captions in ``languages`` only (to stay small)."""
    from PIL import Image

    prepared, sample_dir = Path(prepared), Path(sample_dir)
    if sample_dir.exists():
        shutil.rmtree(sample_dir)
    (sample_dir / "images").mkdir(parents=True)
    card = json.loads((prepared / "card.json").read_text(encoding="utf-8"))
    for split, n in counts.items():
        lines = (prepared / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        records = [json.loads(x) for x in lines]
        # spread the sample over the whole split rather than its first ids
        step = max(1, len(records) // max(n, 1))
        picked = records[::step][:n]
        for r in picked:
            with Image.open(prepared / r["image"]) as im:
                im = im.convert("RGBA")
                im.thumbnail((size, size), Image.Resampling.LANCZOS)
                im = im.quantize(256, method=Image.Quantize.FASTOCTREE)
                im.save(sample_dir / r["image"], optimize=True)
            r["captions"] = {k: v for k, v in r["captions"].items() if k in languages}
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in picked)
        (sample_dir / f"{split}.jsonl").write_text(text, encoding="utf-8")
        card["counts"][split] = len(picked)
    card["sample_of"] = str(prepared)
    card["sample_image_size"] = size
    card.pop("groups", None)
    card["languages"] = [lang for lang in card["languages"] if lang in languages]
    (sample_dir / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    (sample_dir / "README.md").write_text(readme, encoding="utf-8")
    return card


# ----------------------------------------------------------------------------- tuxpaint


def parse_stamp_text(text: str, path: Path | str = "<text>") -> dict[str, list[str]]:
    """A stamp's ``.txt`` -> ``{lang: [captions]}``; the first line is English."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise TransduceError(f"{path}: empty caption file")
    captions: dict[str, list[str]] = {"en": [lines[0]]}
    regional: list[tuple[str, str]] = []
    for line in lines[1:]:
        code, sep, caption = line.partition("=")
        if not sep or ".utf8" not in code or not caption.strip():
            continue
        code = code.split(".utf8")[0].split("@")[0]
        lang, _, region = code.partition("_")
        if region:
            regional.append((lang, caption.strip()))
        else:
            captions.setdefault(lang, []).insert(0, caption.strip())
    for lang, caption in regional:
        group = captions.setdefault(lang, [])
        if caption not in group:
            group.append(caption)
    return captions


def find_stamps(stamps_dir: Path = STAMPS_DIR) -> list[dict]:
    """Every PNG stamp with a caption file, as dataset items (``source`` = PNG path)."""
    if not stamps_dir.is_dir() or not any(stamps_dir.rglob("*.txt")):
        raise TransduceError(
            f"no Tux Paint stamps in {stamps_dir}; install them with "
            f"`apt-get install {APT_PACKAGE}` (Debian/Ubuntu), then run this again"
        )
    items = []
    for png in sorted(stamps_dir.rglob("*.png")):
        txt = png.with_suffix(".txt")
        if png.stem.endswith("_mirror") or not txt.is_file():
            continue
        captions = parse_stamp_text(txt.read_text(encoding="utf-8", errors="replace"), txt)
        rel = png.relative_to(stamps_dir).with_suffix("")
        items.append(
            {
                "id": "-".join(rel.parts),
                "group": " ".join(captions["en"][0].lower().split()),
                "captions": captions,
                "source": str(png),
            }
        )
    return items


def _copy_png(item: dict, path: Path) -> None:
    shutil.copyfile(item["source"], path)


def prepare_tuxpaint(out_dir: Path, stamps_dir: Path = STAMPS_DIR) -> dict:
    """Build the Tux Paint captioning data set in ``out_dir``; return its card."""
    items = find_stamps(Path(stamps_dir))
    card = {
        "name": "tuxpaint",
        "source": f"{stamps_dir} (Debian package {APT_PACKAGE})",
        "licence": LICENCE,
        "note": "PNG stamps only; SVG-only stamps and *_mirror.png are left out",
    }
    return write_caption_dataset(out_dir, items, _copy_png, card, 100, 100)


SAMPLE_README = """# Tux Paint stamps sample

A sample of `transduce data prepare tuxpaint` (the Debian package
`tuxpaint-stamps-default`, https://tuxpaint.org), for offline tests and demos:
pictures downscaled to 96 px (longest side; 256-colour palette PNG with alpha) and
their captions in English, German, French and Spanish from the stamp's `.txt` file
(`captions.en[0]` is the stamp's English description; `en_GB`/`en_AU` variants follow
when they differ).

Licence: GPL-2.0-or-later, like the Tux Paint stamps they come from (pictures and
descriptions by the Tux Paint contributors; see
`/usr/share/doc/tuxpaint-stamps-default/copyright` on a Debian system).
Regenerate with `transduce.data.sources.tuxpaint.make_sample(prepared_dir)`.
"""


def make_sample(prepared: Path, sample_dir: Path = SAMPLE_DIR) -> dict:
    counts = {"train": 240, "valid": 40, "test": 40}
    return make_caption_sample(prepared, sample_dir, counts, 96, SAMPLE_README)


__all__ = [
    "find_stamps",
    "make_caption_sample",
    "make_sample",
    "parse_stamp_text",
    "prepare_tuxpaint",
    "split_of",
    "write_caption_dataset",
]
