"""Benchmark the annotator's wait at the keyboard: a label key pressed in a real browser, until the
next text is on screen.

Usage::

    .venv/bin/python -m bench.bench_keyboard --out bench/out/keyboard.json
    .venv/bin/python -m bench.bench_keyboard --quick          # 1,000 texts, 20 answers
    .venv/bin/python -m bench.bench_keyboard --texts 100000    # other pool sizes (repeatable)

Per pool size (10,000 and 1,000,000 texts by default), a fresh SQLite database is built as the
serving benchmark builds it (``bench_queue.build``: news-length texts and a ranked queue); the
web app runs on loopback as ``python -m app serve --no-worker`` starts it (Streamlit, headless),
and headless Chromium (Debian's, driven by Playwright) signs in and answers ``--answers`` texts
with the key ``1``. Each answer is timed in the page, from the key's ``keydown`` event to the
moment the text box shows another text (a ``MutationObserver``): the whole wait, the server's
rerun (the answer's write unit and the next claim included), the websocket and the browser's
redraw. Between answers the benchmark waits until Streamlit's run is over and a button has the
key bound (as an annotator reads the text first) and ``--pause`` seconds more. A press that
brings no next text within 10 s is counted as lost (``lost_presses``: the key reached old
buttons, see ``app/views/annotate.py``) and pressed again; the wait is timed from the press that
worked. The first ``--warm-up`` answers of each pool are left out (the first reruns import and
cache what later ones reuse).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from bench.bench_queue import build
from app.cli import streamlit_command
from bench.jsonfile import emit
from db.engine import dispose_all, read_unit
from db.models import Annotation, Role
from db.settings import Settings
from db.users import add_user

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LOST_AFTER_S = 10
"""A press with no next text after this long counts as lost, and the key is pressed again."""
MAX_PRESSES = 3
QUEUE = 1_000
"""Texts in the ranked queue (more than a run answers; any size serves alike)."""

_WATCH = """() => {
    const box = () => document.querySelector('.st-key-item-text [data-testid="stText"]');
    const before = box().innerText;
    window.__pressed = null; window.__shown = null;
    document.addEventListener('keydown', () => { window.__pressed ??= performance.now(); },
                              {capture: true, once: true});
    const watch = new MutationObserver(() => {
        const now = box();
        if (now && now.innerText !== before && window.__pressed !== null) {
            window.__shown = performance.now(); watch.disconnect();
        }
    });
    watch.observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 90.0) -> None:
    """Wait until ``url`` answers (the app's health check once it serves)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the app did not answer at {url} within {timeout:.0f} s")


_IDLE = """() => document.querySelector('[data-testid="stApp"]')?.dataset.testScriptState
    === 'notRunning' && (window.hotkeys?.getAllKeyCodes() ?? []).some(k => k.shortcut === '1')"""
"""Streamlit's run is over and a button has the key 1."""


def signed_in_page(pw: Any, url: str, name: str, password: str) -> tuple[Any, Any]:
    """A headless Chromium (``pw``: Playwright's sync API) on the app at ``url``, signed in as
    ``name``; returns the browser (to close) and its page."""
    browser = pw.chromium.launch(
        executable_path=CHROMIUM, headless=True,
        args=["--no-sandbox", "--disable-gpu", "--no-first-run",
              "--disable-background-networking", "--disable-component-update"])
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    return browser, page


def _answers(url: str, n_answers: int, pause_s: float) -> tuple[list[float], int]:
    """Sign in and answer ``n_answers`` texts with the key 1: each answer's wait in ms, and
    how many presses were lost (no new text within ``LOST_AFTER_S``; pressed again)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    waits, lost = [], 0
    with sync_playwright() as pw:
        browser, page = signed_in_page(pw, url, "bench", "bench-password")
        shown = page.locator(".st-key-item-text").get_by_test_id("stText")
        expect(shown).to_be_visible()
        for _ in range(n_answers):
            for _press in range(MAX_PRESSES):
                page.wait_for_function(_IDLE)
                time.sleep(pause_s)
                page.evaluate(_WATCH)
                page.locator("body").press("1")
                try:
                    page.wait_for_function("() => window.__shown !== null",
                                           timeout=LOST_AFTER_S * 1000)
                    break
                except PlaywrightTimeout:
                    lost += 1
            else:
                raise RuntimeError(f"the key 1 was pressed {MAX_PRESSES} times for one text, "
                                   f"{LOST_AFTER_S} s apart, and no next text came")
            waits.append(page.evaluate("() => window.__shown - window.__pressed"))
        browser.close()
    return waits, lost


def measure(n_texts: int, n_answers: int, warm_up: int, pause_s: float) -> dict[str, object]:
    """The keyboard wait at one pool size, in a fresh database and app."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=f"sqlite:///{Path(tmp) / 'keys.db'}", data_dir=Path(tmp))
        _, project_id = build(settings, n_texts, QUEUE)
        add_user(settings, "bench", "bench-password", Role.ADMIN)
        dispose_all()
        port = free_port()
        env = {**os.environ, "DATABASE_URL": settings.database_url,
               "LABELWISE_DATA_DIR": str(settings.data_dir), "PYTHONPATH": str(ROOT)}
        app = subprocess.Popen(streamlit_command("127.0.0.1", port, settings), cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_http(f"http://127.0.0.1:{port}/_stcore/health")
            waits, lost = _answers(f"http://127.0.0.1:{port}", warm_up + n_answers, pause_s)
        finally:
            app.terminate()
            try:
                app.wait(timeout=15)
            except subprocess.TimeoutExpired:
                app.kill()
        with read_unit(settings) as session:
            stored = session.scalar(select(func.count()).select_from(Annotation))
        dispose_all()
    kept = np.array(waits[warm_up:])
    return {"texts": n_texts, "project_id": project_id, "answers": len(kept), "warm_up": warm_up,
            "stored": int(stored or 0), "lost_presses": lost,
            **{f"p{q}_ms": round(float(np.percentile(kept, q)), 1) for q in (50, 95, 99)},
            "max_ms": round(float(kept.max()), 1), "waits_ms": [round(w, 1) for w in waits]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 texts, 20 answers")
    parser.add_argument("--texts", type=int, action="append",
                        help="pool sizes (repeatable; default 10,000 and 1,000,000)")
    parser.add_argument("--answers", type=int, help="answers timed per pool (default 50)")
    parser.add_argument("--warm-up", type=int, default=5, help="answers left out first")
    parser.add_argument("--pause", type=float, default=0.3,
                        help="seconds between a text's keys being bound and the key press")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        parser.error(f"Chromium is needed ({CHROMIUM})")
    sizes = args.texts or ([1_000] if args.quick else [10_000, 1_000_000])
    answers = args.answers or (20 if args.quick else 50)
    runs = [measure(n, answers, args.warm_up, args.pause) for n in sizes]
    emit({"runs": runs, "pause_s": args.pause}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
