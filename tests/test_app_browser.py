"""The listening room as a listener uses it: Debian's Chromium, driven by Playwright, on the app
launched on localhost (real models, index and SQLite store in a temp folder).

Screenshots go to artifacts/ (git-ignored) so a failing run can be looked at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
LISTEN_SECONDS = 1.0
EXAMPLE = "folk_flute.wav"  # one of the shipped examples/ (gr.Examples)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed "
                       "(apt-get install chromium); Playwright's own browsers are not used"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object, Path]]:
    import app
    from ensemble.listening import Room
    from tests.test_app_handlers import make_room_files

    root = tmp_path_factory.mktemp("browser-room")
    room = Room(make_room_files(root, listen_seconds=LISTEN_SECONDS))
    demo = app.build_demo(room)
    port = free_port()
    app.launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
               quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", room, root / "example.wav"
    finally:
        demo.close()


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


def test_upload_listen_rank_submit(served: tuple[str, object, Path], page: object) -> None:
    from playwright.sync_api import expect

    from ensemble.listening import Room

    _, room, example = served
    assert isinstance(room, Room)
    before = room.store.count()

    page.locator("#audio-in input[type=file]").set_input_files(str(example))
    page.wait_for_selector("#audio-in button.play-pause-button")
    # Pick the line-up: drop the drums, keep violin (leader) and cello.
    page.locator("#instruments label", has_text="drums").click()
    expect(page.locator("#leader input")).to_have_value("violin")
    page.click("#run")
    expect(page.locator("#status")).to_contain_text("candidates to rank")
    letters = list("ABCDE")  # Top-5 by default
    for letter in letters:
        expect(page.locator(f"#player-{letter} button.play-pause-button")).to_be_visible()
    expect(page.locator("#candidate-F:visible")).to_have_count(0)
    expect(page.locator("#submit")).to_be_disabled()
    expect(page.locator("#reveal")).to_have_text("")  # no score is on the page before submitting
    _shot(page, "app_candidates.png")

    for letter in letters:
        button = page.locator(f"#player-{letter} button.play-pause-button")
        button.click()  # play
        page.wait_for_timeout(LISTEN_SECONDS * 1000 + 300)
        button.click()  # pause: the gate counts the time in between
        expect(page.locator("#gate")).to_contain_text(f"{letter} ✓")
    expect(page.locator("#gate")).to_contain_text("Rank the candidates and submit")
    expect(page.locator("#submit")).to_be_enabled()

    for rank, letter in enumerate(reversed(letters), start=1):
        page.locator(f"#rank-{letter} input").click()
        page.locator(f'#rank-{letter} li[data-testid="dropdown-option"]').nth(rank - 1).click()
        expect(page.locator(f"#rank-{letter} input")).to_have_value(re.compile(rf"^{rank}\b"))
    page.click("#submit")
    expect(page.locator("#reveal")).to_contain_text("Saved as rating #")
    expect(page.locator("#reveal-table").first).to_be_visible()
    expect(page.locator("#submit")).to_be_disabled()
    _shot(page, "app_reveal.png")

    assert room.store.count() == before + 1
    judgement = room.store.judgements()[-1]
    shown = judgement.shown_order
    # The listener ranked E first, then D, ... A last: slot s got rank 5 - s.
    assert judgement.ranking == [shown[4], shown[3], shown[2], shown[1], shown[0]]
    assert all(s >= LISTEN_SECONDS for s in judgement.listen_seconds)
    assert judgement.instruments == ["cello", "violin"] or judgement.instruments == [
        "violin", "cello"]
    assert judgement.settings["leader"] == "violin"


def test_bad_upload_shows_a_message_and_the_page_stays_usable(
    served: tuple[str, object, Path], page: object, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    bogus = tmp_path / "notes.wav"
    bogus.write_text("this is a shopping list, not a recording\n" * 50)
    page.locator("#audio-in input[type=file]").set_input_files(str(bogus))
    page.click("#run")
    expect(page.locator("#status")).to_contain_text("not an audio file Ensemble can read")
    _shot(page, "app_bad_upload.png")
    # The same page then performs one of the shipped examples, picked from the Examples list.
    page.get_by_text(EXAMPLE).first.click()
    page.wait_for_selector("#audio-in button.play-pause-button")
    page.click("#run")
    expect(page.locator("#status")).to_contain_text("candidates to rank")
    expect(page.locator("#player-E button.play-pause-button")).to_be_visible()


def test_a_new_page_shows_weights_fitted_while_the_app_runs(
    served: tuple[str, object, Path], page: object
) -> None:
    from playwright.sync_api import expect

    room = served[1]
    weights = Path(room.config.weights)  # type: ignore[attr-defined]
    expect(page.locator("#room-info")).to_contain_text("default score weights")  # type: ignore
    weights.write_text('{"weights": {"relevance": 0.4, "pitch_coherence": 0.9, '
                       '"chroma_coherence": 0.1, "loudness_coherence": 0.2}}')
    try:
        page.reload()  # type: ignore[attr-defined]
        expect(page.locator("#room-info")).to_contain_text("learned from ratings")  # type: ignore
    finally:
        weights.unlink()
        room.refresh_weights()  # type: ignore[attr-defined]
