"""The listening room as a listener uses it: Debian's Chromium, driven by Playwright, on the app
launched on localhost (real models, index and SQLite store in a temp folder).

The players are the browser's own <audio> elements; the test plays them from script (as the
page's controls do), reads their positions, and checks what the server stored. Screenshots go
to artifacts/ (git-ignored) so a run can be looked at.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import served_room

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
LISTEN_SECONDS = 1.0
LETTERS = "ABCDE"  # Top-5 by default

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed "
                       "(apt-get install chromium); Playwright's own browsers are not used"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object, Path]]:
    with served_room(tmp_path_factory.mktemp("browser-room"), LISTEN_SECONDS) as served:
        yield served


@pytest.fixture
def page(served: tuple[str, object, Path]) -> Iterator[object]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=120_000)  # a round takes seconds on a busy 2-core machine
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--autoplay-policy=no-user-gesture-required"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(served[0])
            page.wait_for_selector("#run")
            yield page
        finally:
            browser.close()


def _shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)  # type: ignore[attr-defined]


def _audio(letter: str) -> str:
    return f"document.querySelector('#listen-{letter} audio')"


def _options(page: object, dropdown: str) -> list[str]:
    page.locator(f"{dropdown} input").click()  # type: ignore[attr-defined]
    options = page.locator(  # type: ignore[attr-defined]
        f'{dropdown} li[data-testid="dropdown-option"]').all_inner_texts()
    page.keyboard.press("Escape")  # type: ignore[attr-defined]
    return [o.replace("✓", "").strip() for o in options]  # the selected one is ticked


def _pick(page: object, dropdown: str, text: str) -> None:
    page.locator(f"{dropdown} input").click()  # type: ignore[attr-defined]
    page.locator(f'{dropdown} li[data-testid="dropdown-option"]',  # type: ignore[attr-defined]
                 has_text=text).first.click()


def _perform(page: object) -> list[str]:
    """Press Perform, wait for the candidates, return their clips' URLs (shown order)."""
    from playwright.sync_api import expect

    old = page.locator("#players audio").evaluate_all(  # type: ignore[attr-defined]
        "els => els.map(a => a.src)")
    page.click("#run")  # type: ignore[attr-defined]
    expect(page.locator("#status")).to_contain_text("candidates to judge")  # type: ignore
    page.wait_for_function(  # type: ignore[attr-defined]
        "old => { const a = Array.from(document.querySelectorAll('#players audio'));"
        " return a.length > 0 && a.every(x => !old.includes(x.src) && x.readyState >= 2); }",
        arg=old)
    return page.locator("#players audio").evaluate_all(  # type: ignore[attr-defined]
        "els => els.map(a => a.src)")


def _continue(page: object, button: str) -> list[str]:
    """Press Keep or Undo and wait for the next round's clips (its URLs, shown order)."""
    old = page.locator("#players audio").evaluate_all(  # type: ignore[attr-defined]
        "els => els.map(a => a.src)")
    page.click(button)  # type: ignore[attr-defined]
    try:
        page.wait_for_function(  # type: ignore[attr-defined]
            "old => { const a = Array.from(document.querySelectorAll('#players audio'));"
            " return a.length > 0 && a.every(x => !old.includes(x.src)); }", arg=old)
    except Exception as exc:  # Playwright's TimeoutError: say what the page showed instead
        _shot(page, f"app_{button[1:]}_timeout.png")
        said = page.locator("#queue, #status, #song-note").all_inner_texts()  # type: ignore
        raise AssertionError(f"no new round after {button}; the page said {said}") from exc
    return page.locator("#players audio").evaluate_all(  # type: ignore[attr-defined]
        "els => els.map(a => a.src)")


def _hear(page: object, letter: str, rate: float = 1.0) -> float:
    """Play a candidate at ``rate`` until the server's gate ticks it; returns the wall time."""
    from playwright.sync_api import expect

    page.evaluate(f"{_audio(letter)}.playbackRate = {rate}; {_audio(letter)}.play()")  # type: ignore[attr-defined]
    started = time.monotonic()
    expect(page.locator("#gate")).to_contain_text(f"{letter} ✓")  # type: ignore[attr-defined]
    return time.monotonic() - started


def test_the_page_offers_only_choices_the_library_plays(
    served: tuple[str, object, Path], page: object
) -> None:
    from playwright.sync_api import expect

    room = served[1]
    assert _options(page, "#leader") == room.roles.leaders  # type: ignore[attr-defined]
    band = page.locator("#instruments label").all_inner_texts()  # type: ignore[attr-defined]
    assert [b.strip() for b in band] == room.roles.band_choices("violin")  # type: ignore[attr-defined]
    # Unticking and re-ticking a band member never moves the lead.
    page.locator("#instruments label", has_text="cello").click()  # type: ignore[attr-defined]
    page.locator("#instruments label", has_text="cello").click()  # type: ignore[attr-defined]
    expect(page.locator("#leader input")).to_have_value("violin")  # type: ignore[attr-defined]
    # A cello lead takes the cello out of the band; every offered member is then ticked and
    # the round plays: no offered choice fails.
    _pick(page, "#leader", "cello")
    expect(page.locator("#instruments label")).to_have_text(  # type: ignore[attr-defined]
        room.roles.band_choices("cello"))  # type: ignore[attr-defined]
    for label in page.locator("#instruments label").all():  # type: ignore[attr-defined]
        if not label.locator("input").is_checked():
            label.click()
    page.locator("#audio-in input[type=file]").set_input_files(str(served[2]))  # type: ignore
    expect(page.locator("#upload-note")).to_contain_text("ready to perform")  # type: ignore
    _perform(page)
    expect(page.locator("#status")).not_to_contain_text("⚠️")  # type: ignore[attr-defined]


def test_listen_judge_with_a_tie_and_a_reason(served: tuple[str, object, Path],
                                              page: object) -> None:
    from playwright.sync_api import expect

    _, room, example = served
    page.locator("#audio-in input[type=file]").set_input_files(str(example))  # type: ignore
    expect(page.locator("#upload-note")).to_contain_text("ready to perform")  # type: ignore
    first = _perform(page)
    assert len(first) == len(LETTERS)
    expect(page.locator("#submit")).to_be_disabled()  # type: ignore[attr-defined]
    expect(page.locator("#reveal")).to_have_text("")  # type: ignore[attr-defined]
    _shot(page, "app_candidates.png")
    # The overview plot lets a finger scroll the page: no drag-to-zoom or pan.
    plot = "document.querySelector('#overview .js-plotly-plot')"
    page.wait_for_function(f"{plot} && {plot}._fullLayout")  # type: ignore[attr-defined]
    assert page.evaluate(f"{plot}._fullLayout.dragmode") is False  # type: ignore[attr-defined]

    # Playing B pauses A.
    page.evaluate(f"{_audio('A')}.play()")  # type: ignore[attr-defined]
    page.wait_for_function(f"{_audio('A')}.currentTime > 0.3")  # type: ignore[attr-defined]
    page.evaluate(f"{_audio('B')}.play()")  # type: ignore[attr-defined]
    page.wait_for_function(f"{_audio('A')}.paused && !{_audio('B')}.paused")  # type: ignore
    # What counts is media time heard: at half speed a candidate needs twice the wall time
    # (the server ticks it only once its position has advanced LISTEN_SECONDS).
    assert _hear(page, "B") >= LISTEN_SECONDS
    slow = _hear(page, "C", rate=0.5)
    position = page.evaluate(f"{_audio('C')}.currentTime")  # type: ignore[attr-defined]
    assert slow >= 2 * LISTEN_SECONDS and position <= slow / 2 + 0.3, (slow, position)
    for letter in "ADE":
        _hear(page, letter)
    page.evaluate(f"{_audio('E')}.pause()")  # type: ignore[attr-defined]
    expect(page.locator("#submit")).to_be_enabled()  # type: ignore[attr-defined]
    _shot(page, "app_heard.png")

    # Ranks already given are not offered again, until "tie" is ticked.
    _pick(page, "#rank-A", "1 (best)")
    assert "1 (best)" not in _options(page, "#rank-B")
    page.locator("#also label", has_text="tie").click()  # type: ignore[attr-defined]
    for letter, rank in zip(LETTERS, ["1 (best)", "1 (best)", "2", "3", "4"], strict=True):
        _pick(page, f"#rank-{letter}", rank)
    page.locator("#reason textarea").fill("A and B sound alike; E drifts")  # type: ignore
    before = room.store.count()  # type: ignore[attr-defined]
    page.click("#submit")  # type: ignore[attr-defined]
    expect(page.locator("#reveal")).to_contain_text("Saved as rating #")  # type: ignore
    _shot(page, "app_reveal.png")
    assert room.store.count() == before + 1  # type: ignore[attr-defined]
    j = room.store.judgements()[-1]  # type: ignore[attr-defined]
    order = j.shown_order
    assert j.verdict == "tie" and j.ties == [[order[0], order[1]]]
    assert j.reason == "A and B sound alike; E drifts"
    assert j.flags == []  # a real browser that listened passes every server check
    assert j.local_id and all(s >= LISTEN_SECONDS for s in j.listen_seconds)

    # Keep C and continue from it: a new round from the song's ending, the timeline shows the
    # input and the section; undo goes back to the input alone; the song downloads.
    sections = "document.querySelector('#timeline .js-plotly-plot').data.length"
    _pick(page, "#keep-choice", "C")
    kept = _continue(page, "#keep")
    page.wait_for_function(f"{sections} === 2")  # type: ignore[attr-defined]
    assert room.store.keeps()[j.uid]  # type: ignore[attr-defined]  # kept beside the judgement
    _shot(page, "app_song.png")
    _continue(page, "#undo")
    page.wait_for_function(f"{sections} === 1")  # type: ignore[attr-defined]
    expect(page.locator("#song-files")).to_be_hidden()  # type: ignore  # nothing to download yet
    page.click("#song-download")  # type: ignore[attr-defined]
    expect(page.locator("#song-files")).to_contain_text(".mid", timeout=120_000)  # type: ignore
    assert not set(kept) & set(first)

    # The same example again: no clip comes back under a URL of the last round, and the song's
    # downloaded files, now stale, are hidden.
    second = _perform(page)
    expect(page.locator("#song-files")).to_be_hidden()  # type: ignore
    assert not set(first) & set(second)


def test_a_broken_upload_is_named_on_arrival(served: tuple[str, object, Path], page: object,
                                             tmp_path: Path) -> None:
    from playwright.sync_api import expect

    bogus = tmp_path / "notes.wav"
    bogus.write_text("this is a shopping list, not a recording\n" * 50)
    page.locator("#audio-in input[type=file]").set_input_files(str(bogus))  # type: ignore
    # Beside the player, before anyone presses Perform.
    expect(page.locator("#upload-note")).to_contain_text("not an audio file")  # type: ignore
    _shot(page, "app_bad_upload.png")
