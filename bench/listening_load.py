"""Listening room under a crowd: N listeners at once on the shipped models, and the disk after.

Usage: python bench/listening_load.py [--listeners 12] [--ttl 60] [--port 7913]
Starts `python app.py` (shipped checkpoints and examples/index, ratings in a temporary database,
sessions ending after --ttl idle seconds). N-1 gradio_client listeners and one Chromium page
perform, fetch and hear every candidate, rank and submit at the same time. Prints each round's
wait, what the page showed while it waited (a screenshot goes to artifacts/), the judgements'
flags, and the bytes the app keeps on disk before, during and after the sessions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ensemble.ratings import RatingsStore  # noqa: E402
from ensemble.room_files import disk_usage  # noqa: E402

INPUT = ROOT / "examples" / "folk_flute.wav"
TOP_K = 5
MAX_CANDIDATES = 8


def listener(client: Any, url: str, listen_s: float) -> float:
    """One API listener's visit; returns the seconds its round took to arrive."""
    from gradio_client import handle_file

    asked = time.monotonic()
    out = client.predict(handle_file(str(INPUT)), "violin", ["cello", "bass"], TOP_K, 1, 1.0,
                         0.15, 0.15, 0.1, 0.1, True, 0, 0, 0, -60, False, api_name="/perform")
    waited = time.monotonic() - asked
    for slot, src in enumerate(re.findall(r'src="([^"]+)"', out[4])):
        with urllib.request.urlopen(url + src, timeout=120) as clip:
            clip.read()
        for kind, pos in (("play", 0.0), ("pause", listen_s + 0.2)):
            if kind == "pause":
                time.sleep(listen_s + 0.2)
            client.predict(json.dumps([{"slot": slot, "kind": kind, "pos": pos,
                                        "t": time.monotonic()}]), api_name="/listen")
    client.predict([], "", *range(1, TOP_K + 1), *[None] * (MAX_CANDIDATES - TOP_K),
                   api_name="/submit")
    return waited


def browser(url: str, shot: Path) -> tuple[float, list[str], float]:
    """A page that presses Perform while the others wait, then hears every candidate in turn
    and submits a ranking; returns its wait, what its queue line said meanwhile, and the
    seconds from its candidates' arrival to its saved rating."""
    from playwright.sync_api import expect, sync_playwright

    seen: list[str] = []
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--autoplay-policy=no-user-gesture-required"])
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        expect.set_options(timeout=600_000)
        page.goto(url)
        page.locator("#audio-in input[type=file]").set_input_files(str(INPUT))
        expect(page.locator("#upload-note")).to_contain_text("ready to perform")
        asked = time.monotonic()
        page.click("#run")
        while "candidates to judge" not in page.inner_text("#status"):
            text = page.inner_text("#queue").strip()
            if text and text not in seen:
                seen.append(text)
                if len(seen) == 1:
                    page.screenshot(path=str(shot), full_page=False)
            time.sleep(0.5)
        waited, arrived = time.monotonic() - asked, time.monotonic()
        for letter in "ABCDE":
            page.evaluate(f"document.querySelector('#listen-{letter} audio').play()")
            expect(page.locator("#gate")).to_contain_text(f"{letter} ✓")
        for rank, letter in enumerate("ABCDE", start=1):
            page.locator(f"#rank-{letter} input").click()
            page.locator(f'#rank-{letter} li[data-testid="dropdown-option"]').first.click()
            expect(page.locator(f"#rank-{letter} input")).to_have_value(re.compile(f"^{rank}"))
        page.click("#submit")
        expect(page.locator("#reveal")).to_contain_text("Saved as rating #")
        judged = time.monotonic() - arrived
        chromium.close()
    return waited, seen, judged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listeners", type=int, default=12)
    parser.add_argument("--ttl", type=float, default=60.0)
    parser.add_argument("--port", type=int, default=7913)
    parser.add_argument("--listen", type=float, default=3.0)
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}/"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "tmp").mkdir()
        env = {**os.environ, "ENSEMBLE_RATINGS_DB": f"{tmp}/ratings.sqlite",
               "ENSEMBLE_WEIGHTS": f"{tmp}/none.json", "ENSEMBLE_SESSION_TTL_S": str(args.ttl),
               "ENSEMBLE_LISTEN_SECONDS": str(args.listen), "TMPDIR": f"{tmp}/tmp",
               "GRADIO_SERVER_PORT": str(args.port), "GRADIO_SERVER_NAME": "127.0.0.1",
               "GRADIO_ANALYTICS_ENABLED": "False"}
        app = subprocess.Popen([sys.executable, str(ROOT / "app.py")], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            run(url, Path(tmp), args)
        finally:
            app.kill()
            app.wait()


def run(url: str, tmp: Path, args: argparse.Namespace) -> None:
    for _ in range(600):
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(1)
    before = disk_usage(tmp / "tmp")
    shot = ROOT / "artifacts" / "app_queue.png"
    shot.parent.mkdir(exist_ok=True)
    from gradio_client import Client

    # Pages open one after another (each reads the app's config once); their rounds collide.
    clients = [Client(url, verbose=False, download_files=False, analytics_enabled=False)
               for _ in range(args.listeners - 1)]
    started = time.monotonic()
    with ThreadPoolExecutor(args.listeners) as pool:
        api = [pool.submit(listener, client, url, args.listen) for client in clients]
        time.sleep(2.0)  # the page arrives when the line has formed
        page_wait, seen, page_judged = browser(url, shot)
        waits = [f.result() for f in api]
    total = time.monotonic() - started
    during = disk_usage(tmp / "tmp")
    judgements = RatingsStore(tmp / "ratings.sqlite", create=False).judgements()
    print(f"{args.listeners} listeners: all {len(waits) + 1} rounds arrived in {total:.0f} s; "
          f"API waits median {statistics.median(waits):.1f} s, worst {max(waits):.1f} s; "
          f"the page waited {page_wait:.1f} s, then heard all and submitted in "
          f"{page_judged:.1f} s")
    print("the page's queue line said:", " | ".join(seen[:3]), f"(screenshot {shot})")
    print(f"judgements stored: {len(judgements)}; flagged: "
          f"{sum(1 for j in judgements if j.flags)} ({[j.flags for j in judgements if j.flags]})")
    waited_for_end = time.monotonic()
    while disk_usage(tmp / "tmp") > before and time.monotonic() - waited_for_end < 4 * args.ttl:
        time.sleep(2)
    print(f"disk kept by the app: {before / 1e6:.2f} MB before, {during / 1e6:.2f} MB after "
          f"the rounds, {disk_usage(tmp / 'tmp') / 1e6:.2f} MB "
          f"{time.monotonic() - waited_for_end:.0f} s later (sessions end {args.ttl:g} s idle)")


if __name__ == "__main__":
    main()
