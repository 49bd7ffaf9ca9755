"""The demo page in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, installed here with apt-get when missing) driven by Selenium against
``transduce serve`` on 127.0.0.1 with tiny untrained models of every task.

It types and runs text, uploads a picture and a recording, switches models, changes the
search options, shows n-best lists, errors for a bad upload and an over-limit request,
follows a preset link, hovers alignments, checks the phone layout, the keyboard and the
labels, and fails on any error in the browser's console. Screenshots of the states go to
a temporary folder, or into ``docs/`` with ``TRANSDUCE_SCREENSHOTS=docs``.
``TRANSDUCE_BROWSER=0`` skips the test (for machines without apt); nothing else does.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.tiny_models import (
    caption_raw,
    speech_raw,
    summarization_raw,
    translation_raw,
    untrained_model_dir,
)
from transduce.data.readers import SAMPLES_DIR

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
MAX_INPUTS = 4

if os.environ.get("TRANSDUCE_BROWSER") == "0":
    pytest.skip("TRANSDUCE_BROWSER=0", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")  # in the dev extra
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


def ensure_chromium() -> None:
    """Install Debian's chromium and chromium-driver with apt-get when they are missing."""
    if Path(CHROMIUM).exists() and Path(DRIVER).exists():
        return
    if shutil.which("apt-get") is None:
        pytest.fail("the browser test needs chromium and chromium-driver (Debian packages)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq",
                                                "chromium", "chromium-driver"]):  # fmt: skip
        done = subprocess.run([*sudo, *cmd], env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-models")
    raws = [translation_raw(), summarization_raw(), caption_raw(), speech_raw()]
    folders = [untrained_model_dir(raw, root / raw["name"]) for raw in raws]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "transduce.cli", "serve", *map(str, folders), "--port",
           str(port), "--max-inputs", str(MAX_INPUTS), "--max-upload-mb", "2",
           "--workers", "2", "--threads", "1", "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "transduce serve did not start in 120 s"
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in [*FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1000"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not download
    service = webdriver.ChromeService(executable_path=DRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    if os.environ.get("TRANSDUCE_SCREENSHOTS") == "docs":
        return ROOT / "docs"
    return tmp_path_factory.mktemp("screenshots")


def screenshot(driver, folder: Path, name: str, width: int = 760) -> None:
    """A small PNG of the page (scaled to ``width`` pixels, 64 colours)."""
    from io import BytesIO

    from PIL import Image

    image = Image.open(BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.quantize(64).save(folder / f"page-{name}.png", optimize=True)


def console_errors(driver, allowed: tuple[str, ...] = ()) -> list[str]:
    """Severe console entries since the last call, except network errors with an
    ``allowed`` status (the error displays provoke them on purpose)."""
    entries = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return [e["message"] for e in entries if not any(f"status of {a}" in e["message"]
                                                      for a in allowed)]  # fmt: skip


def api(base: str, payload: dict) -> dict:
    request = urllib.request.Request(
        f"{base}/predict", json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.load(r)


def wait(driver, condition, timeout: float = 60):
    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


def open_page(driver, url: str, title: str) -> None:
    """Load the page and wait until it shows ``title``; a broken script fails here with
    the console's errors."""
    from selenium.common.exceptions import TimeoutException

    driver.get(url)
    try:
        wait(driver, lambda d: d.find_element(By.ID, "title").text == title, timeout=30)
    except TimeoutException:
        pytest.fail(f"the page did not load its models; console: {console_errors(driver)}")


def results(driver):
    """Wait until the page has finished decoding; return the result items."""
    wait(driver, lambda d: d.find_element(By.ID, "run").is_enabled())
    return driver.find_elements(By.CSS_SELECTOR, "#results .item")


def choose_model(driver, name: str) -> None:
    Select(driver.find_element(By.ID, "model")).select_by_value(name)
    wait(driver, lambda d: d.find_element(By.ID, "title").text == name)


def run_and_wait(driver, error: bool = False) -> None:
    """Click Run and wait for the outputs (or, with ``error``, for an error message)."""
    driver.execute_script("document.getElementById('results').innerHTML = '';")
    driver.find_element(By.ID, "run").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#results .item, #results .error"))
    results(driver)
    shown = driver.find_elements(By.CSS_SELECTOR, "#results .error")
    assert bool(shown) == error, shown[0].text if shown else "no error shown"


def hover_first_token(driver) -> None:
    token = driver.find_element(By.CSS_SELECTOR, "#results .toks.out .tok")
    webdriver.ActionChains(driver).move_to_element(token).perform()
    wait(driver, lambda d: "on" in token.get_attribute("class"))


def canvas_is_painted(driver, selector: str) -> bool:
    return driver.execute_script(
        """const c = document.querySelector(arguments[0]);
           const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
           for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true;
           return false;""",
        selector,
    )


def test_demo_page_in_chromium(server, browser, shots, tmp_path):
    d = browser
    open_page(d, server + "/", "tiny-translate")
    assert d.find_element(By.ID, "status").text == "online"
    assert console_errors(d) == []

    # --- type text, Ctrl+Enter runs; outputs and alignment as the API gives them
    lines = ["Bibliothek zum Lesen von Bilddateien", "Ein Satz."]
    box = d.find_element(By.ID, "text")
    box.clear()
    box.send_keys(lines[0], Keys.ENTER, lines[1])  # Enter alone is a new line
    assert box.get_attribute("value") == "\n".join(lines)
    d.execute_script("document.getElementById('results').innerHTML = '';")
    box.send_keys(Keys.CONTROL, Keys.ENTER)
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#results .item"))
    items = results(d)
    expected = api(server, {"model": "tiny-translate", "inputs": lines, "attention": True})
    assert [i.find_element(By.CSS_SELECTOR, ".out").text for i in items] == [
        o or "∅" for o in expected["outputs"]
    ]
    first = items[0]
    sources = first.find_elements(By.CSS_SELECTOR, ".src .tok")
    outs = first.find_elements(By.CSS_SELECTOR, ".toks.out .tok")
    assert len(sources) == len(expected["attention"][0]["source"])
    assert len(outs) == len(expected["attention"][0]["tokens"])
    assert "mean of 4 heads" in first.find_element(By.CSS_SELECTOR, ".what").text
    hover_first_token(d)
    row = expected["attention"][0]["weights"][0]
    lit = [bool(s.get_attribute("style")) for s in sources]
    assert lit == [w / max(row) > 0.02 for w in row]  # exactly the attended source tokens
    screenshot(d, shots, "text")

    # --- beam and n-best: Enter in an option field runs
    beam, nbest = d.find_element(By.ID, "beam"), d.find_element(By.ID, "nbest")
    beam.clear()
    beam.send_keys("3")
    nbest.clear()
    nbest.send_keys("2")
    d.execute_script("document.getElementById('results').innerHTML = '';")
    nbest.send_keys(Keys.ENTER)
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#results .item"))
    items = results(d)
    assert "beam 3" in d.find_element(By.CSS_SELECTOR, "#results .meta").text
    expected = api(server, {"model": "tiny-translate", "inputs": lines, "beam": 3, "nbest": 2})
    shown = [[li.text.split("\n")[-1] for li in i.find_elements(By.CSS_SELECTOR, "ol.nbest li")]
             for i in items]  # fmt: skip
    assert shown == [[t or "∅" for t in o] for o in expected["outputs"]]
    assert d.find_element(By.ID, "out-hint").text == "2-best, best first"
    assert "beam 3" in d.find_element(By.CSS_SELECTOR, "#results .meta").text
    screenshot(d, shots, "nbest")

    # --- sampling: its fields appear, the beam field goes
    d.find_element(By.CSS_SELECTOR, "label[for=s-sample]").click()
    assert d.find_element(By.ID, "temperature").is_displayed()
    assert not d.find_element(By.ID, "beam").is_displayed()
    nbest.clear()
    nbest.send_keys("1")
    run_and_wait(d)
    assert "sampling (T" in d.find_element(By.CSS_SELECTOR, "#results .meta").text
    assert len(d.find_elements(By.CSS_SELECTOR, "#results .item")) == 2
    d.find_element(By.CSS_SELECTOR, "label[for=s-beam]").click()
    assert console_errors(d) == []

    # --- over the server's limit: the page shows the 413 message
    box.clear()
    box.send_keys("\n".join(f"Satz {i}." for i in range(MAX_INPUTS + 1)))
    run_and_wait(d, error=True)
    error = d.find_element(By.CSS_SELECTOR, "#results .error")
    assert f"too many inputs: {MAX_INPUTS + 1}" in error.text and "--max-inputs" in error.text
    assert error.get_attribute("role") == "alert"
    screenshot(d, shots, "error-limit")
    assert console_errors(d, allowed=("413",)) == []

    # --- switch model: a pointer-generator summarizer shows p_gen on its words
    d.find_element(By.ID, "clear").click()
    choose_model(d, "tiny-summarize")
    assert "Summarize" == d.find_element(By.ID, "run").text
    assert "command line tool" in box.get_attribute("value")  # its example text
    run_and_wait(d)
    token = d.find_element(By.CSS_SELECTOR, "#results .toks.out .tok")
    assert token.get_attribute("title").startswith("p_gen ")
    assert console_errors(d) == []

    # --- upload a picture: caption, alignment over the picture
    choose_model(d, "tiny-caption")
    assert d.find_element(By.ID, "drop").is_displayed()
    assert not d.find_element(By.ID, "text").is_displayed()
    picture = sorted((SAMPLES_DIR / "emoji").rglob("*.png"))[0]
    d.find_element(By.ID, "file").send_keys(str(picture))
    wait(d, lambda d: picture.name in d.find_element(By.ID, "file-list").text)
    run_and_wait(d)
    (item,) = d.find_elements(By.CSS_SELECTOR, "#results .item")
    assert item.find_element(By.CSS_SELECTOR, ".out").text
    assert picture.name in item.find_element(By.CSS_SELECTOR, ".src").text
    assert not canvas_is_painted(d, "#results .pic canvas")
    hover_first_token(d)
    assert canvas_is_painted(d, "#results .pic canvas")
    screenshot(d, shots, "caption")

    # --- a bad upload: the task's message, naming the file
    bad = tmp_path / "notes.png"
    bad.write_text("these are notes, not a picture")
    d.find_element(By.ID, "file").send_keys(str(bad))
    wait(d, lambda d: "notes.png" in d.find_element(By.ID, "file-list").text)
    run_and_wait(d, error=True)
    error = d.find_element(By.CSS_SELECTOR, "#results .error")
    assert "notes.png" in error.text
    screenshot(d, shots, "error-upload")
    assert console_errors(d, allowed=("400",)) == []

    # --- upload a recording: transcript, attention span under the player, mode choice
    choose_model(d, "tiny-asr")
    assert d.find_element(By.ID, "mode").is_displayed()
    clip = sorted((SAMPLES_DIR / "speech-tts").rglob("*.flac"))[0]
    d.find_element(By.ID, "file").send_keys(str(clip))
    wait(d, lambda d: clip.name in d.find_element(By.ID, "file-list").text)
    Select(d.find_element(By.ID, "mode")).select_by_value("joint")
    run_and_wait(d)
    (item,) = d.find_elements(By.CSS_SELECTOR, "#results .item")
    assert item.find_element(By.TAG_NAME, "audio")
    # the transcript's segment times under it (a short clip: one piece)
    times = item.find_elements(By.CSS_SELECTOR, "ol.segments li .rank")
    assert times and times[0].text.endswith(" s") and "–" in times[0].text
    hover_first_token(d)
    assert canvas_is_painted(d, "#results canvas.span")
    screenshot(d, shots, "speech")
    Select(d.find_element(By.ID, "mode")).select_by_value("ctc_greedy")
    run_and_wait(d)
    assert "CTC best path" in d.find_element(By.CSS_SELECTOR, "#results .what").text
    assert console_errors(d) == []

    # --- the preset link runs at once with its options
    d.get(server + "/?model=tiny-translate&beam=3&nbest=2&text=Ein%20Satz.")
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#results ol.nbest"))
    results(d)
    assert d.find_element(By.ID, "title").text == "tiny-translate"
    assert d.find_element(By.ID, "beam").get_attribute("value") == "3"
    assert len(d.find_elements(By.CSS_SELECTOR, "#results ol.nbest li")) == 2
    assert console_errors(d) == []


def test_keyboard_labels_and_phone_layout(server, browser, shots):
    d = browser
    open_page(d, server + "/", "tiny-translate")
    # every control has a name a screen reader can read
    unnamed = d.execute_script(
        """return [...document.querySelectorAll('input, select, textarea, button')]
             .filter((e) => e.type !== 'file' && !(e.labels && e.labels.length)
                            && !e.getAttribute('aria-label') && !e.textContent.trim())
             .map((e) => e.id);"""
    )
    assert unnamed == []
    # Tab walks model -> text -> search choice -> options -> alignment -> Run -> Clear
    d.find_element(By.ID, "model").click()
    d.find_element(By.ID, "model").send_keys(Keys.ESCAPE)
    order = []
    for _ in range(12):
        order.append(d.switch_to.active_element.get_attribute("id"))
        d.switch_to.active_element.send_keys(Keys.TAB)
    want = ["model", "text", "s-beam", "beam", "nbest", "max_len", "attention", "run", "clear"]
    seen = [i for i in order if i in want]
    assert seen[: len(want)] == want, order
    # the search choice works from the keyboard (arrow keys move the radio)
    d.find_element(By.ID, "s-beam").send_keys(Keys.ARROW_RIGHT)
    assert d.find_element(By.ID, "s-sample").is_selected()
    assert d.find_element(By.ID, "temperature").is_displayed()
    d.find_element(By.ID, "s-sample").send_keys(Keys.ARROW_LEFT)
    # Run from the keyboard, then walk the output tokens with Tab: focus lights the source
    d.find_element(By.ID, "run").send_keys(Keys.ENTER)
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#results .toks.out .tok"))
    token = d.find_element(By.CSS_SELECTOR, "#results .toks.out .tok")
    d.execute_script("arguments[0].focus();", token)
    assert "on" in token.get_attribute("class")

    # phone width: one column, nothing wider than the screen
    d.set_window_size(390, 900)
    try:
        d.get(server + "/?model=tiny-translate&text=Ein%20Satz.")
        wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#results .item"))
        results(d)
        overflow = d.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;"
        )
        assert overflow <= 0
        cards = d.find_elements(By.CSS_SELECTOR, "main .card")
        assert cards[0].location["x"] == cards[1].location["x"]  # stacked, not side by side
        assert cards[1].location["y"] > cards[0].location["y"]
        screenshot(d, shots, "phone", width=390)
    finally:
        d.set_window_size(1280, 1000)
    assert console_errors(d) == []
