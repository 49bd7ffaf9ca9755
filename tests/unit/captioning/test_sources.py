"""Data set helpers: Tux Paint caption files, emoji variant grouping, the split."""

from __future__ import annotations

import pytest

from transduce.config import TransduceError
from transduce.data.sources import emoji, tuxpaint


def test_parse_stamp_text():
    text = (
        "A red apple.\n"
        "de.utf8=Ein roter Apfel.\n"
        "en_GB.utf8=A red apple.\n"
        "en_AU.utf8=A red apple, mate.\n"
        "pt_BR.utf8=Uma maçã vermelha.\n"
        "pt.utf8=Uma maçã encarnada.\n"
        "sr@latin.utf8=Crvena jabuka.\n"
        "broken line\n"
    )
    caps = tuxpaint.parse_stamp_text(text)
    assert caps["en"] == ["A red apple.", "A red apple, mate."]
    assert caps["de"] == ["Ein roter Apfel."]
    assert caps["pt"] == ["Uma maçã encarnada.", "Uma maçã vermelha."]
    assert caps["sr"] == ["Crvena jabuka."]


def test_missing_stamps_names_the_apt_package(tmp_path):
    with pytest.raises(TransduceError, match="apt-get install tuxpaint-stamps-default"):
        tuxpaint.find_stamps(tmp_path)


def test_missing_font_names_the_apt_package(tmp_path):
    with pytest.raises(TransduceError, match="apt-get install fonts-noto-color-emoji"):
        emoji.load_font(tmp_path / "NotoColorEmoji.ttf")


def test_caption_of():
    assert emoji.caption_of(":thumbs_up_medium_skin_tone:") == "thumbs up medium skin tone"
    assert emoji.caption_of(":sich_küssendes_paar_mann,_mann:") == "sich küssendes paar mann, mann"


ENTRIES = [
    ("\U0001f44d", ":thumbs_up:"),
    ("\U0001f44d\U0001f3fd", ":thumbs_up_medium_skin_tone:"),
    ("\U0001f3c3", ":person_running:"),
    ("\U0001f3c3\u200d\u2640\ufe0f", ":woman_running:"),
    ("\U0001f3c3\U0001f3ff\u200d\u2642\ufe0f", ":man_running_dark_skin_tone:"),
    ("\U0001f468\u200d\u2695\ufe0f", ":man_health_worker:"),
    ("\U0001f469\U0001f3fb\u200d\u2695\ufe0f", ":woman_health_worker_light_skin_tone:"),
    ("\U0001f9d1\u200d\u2695\ufe0f", ":health_worker:"),
    ("\U0001f91d", ":handshake:"),
    (
        "\U0001faf1\U0001f3fb\u200d\U0001faf2\U0001f3ff",
        ":handshake_light_skin_tone_dark_skin_tone:",
    ),
    ("\U0001f34e", ":red_apple:"),
    ("\U0001f34f", ":green_apple:"),
]


def test_variants_share_a_group_and_so_a_split():
    groups = emoji.group_variants(ENTRIES)
    g = [groups[e] for e, _ in ENTRIES]
    assert g[0] == g[1] == "thumbs up"
    assert g[2] == g[3] == g[4] == "woman running"  # the shortest member caption
    assert g[5] == g[6] == g[7] == "health worker"
    assert g[8] == g[9] == "handshake"
    assert len({g[0], g[2], g[5], g[8], g[10], g[11]}) == 6  # different emoji stay apart
    splits = {e: tuxpaint.split_of(groups[e], 300, 300) for e, _ in ENTRIES}
    for a, b in [(0, 1), (2, 3), (2, 4), (5, 6), (5, 7), (8, 9)]:
        assert splits[ENTRIES[a][0]] == splits[ENTRIES[b][0]]


def test_split_is_deterministic():
    assert tuxpaint.split_of("thumbs up", 50, 50) == tuxpaint.split_of("thumbs up", 50, 50)
    counts = {"train": 0, "valid": 0, "test": 0}
    for i in range(2000):
        counts[tuxpaint.split_of(f"g{i}", 100, 100)] += 1
    assert 150 < counts["valid"] < 250 and 150 < counts["test"] < 250
