"""Downloads built on the server: "Prepare", then "Download", under AppTest and in a browser."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


def _page(source: str, log: str) -> None:
    """A page offering ``source`` as a download; its ident is ``source`` and the version
    written beside it (``source.version``); every build adds a line to ``log``."""
    from pathlib import Path

    from app.downloads import prepared_download

    def build() -> bytes:
        with open(log, "a") as f:
            f.write("built\n")
        return Path(source).read_bytes()

    version = Path(source + ".version").read_text()
    prepared_download("the file", build, (source, version), key="f", file_name="f.txt",
                      mime="text/plain")


@pytest.fixture
def files(tmp_path):
    source, log = tmp_path / "data.txt", tmp_path / "built.log"
    source.write_text("hello")
    Path(f"{source}.version").write_text("1")
    log.touch()
    return source, log


def _session(source: Path, log: Path) -> AppTest:
    return AppTest.from_function(_page, args=(str(source), str(log)), default_timeout=30).run()


def _prepare(at: AppTest) -> AppTest:
    (button,) = at.button
    assert button.label == "Prepare the file"
    return button.click().run()


def test_a_download_is_prepared_once_and_shared_until_the_file_changes(files):
    source, log = files
    at = _session(source, log)
    assert not at.get("download_button") and log.read_text() == ""  # nothing built unasked
    _prepare(at)
    (download,) = at.get("download_button")
    assert download.proto.label == "Download the file · 5 bytes"
    assert not at.button and log.read_text() == "built\n"
    at.run()  # a rerun serves the same bytes: not built again
    assert at.get("download_button") and log.read_text() == "built\n"
    other = _prepare(_session(source, log))  # another session, the same file: shared
    assert other.get("download_button") and log.read_text() == "built\n"

    source.write_text("hello again")
    Path(f"{source}.version").write_text("2")  # a new version asks for "Prepare" again
    at.run()
    assert not at.get("download_button") and at.button[0].label == "Prepare the file"
    _prepare(at)
    (download,) = at.get("download_button")
    assert download.proto.label == "Download the file · 11 bytes"
    assert log.read_text() == "built\n" * 2


def test_a_file_gone_before_it_is_prepared_is_an_error_and_prepare_again(files):
    source, log = files
    at = _session(source, log)
    source.unlink()
    _prepare(at)
    (error,) = at.error
    assert error.value.startswith(r"Could not prepare the file\: \[Errno 2\] No such file")
    assert not at.get("download_button") and at.button[0].label == "Prepare the file"
    source.write_text("back")
    _prepare(at)
    assert at.get("download_button")[0].proto.label == "Download the file · 4 bytes"


PROBE = '''
import streamlit as st
from app.downloads import prepared_download

if st.query_params.get("poll"):  # another user: a fragment that reruns every 0.1 s
    @st.fragment(run_every=0.1)
    def poll():
        st.caption("polling")
    poll()
else:
    prepared_download("the file", lambda: bytes(range(256)) * 400, ("probe", 1), key="f",
                      file_name="f.bin", mime="application/octet-stream")
'''


@pytest.mark.slow
def test_a_prepared_download_comes_while_another_session_reruns(tmp_path):
    """The reason for "Prepare": a browser slow to fetch the file (1 s), while another
    session reruns 10 times a second. A deferred download (a callable as the data) gets a 404
    here and no file (seen with this probe, the callable in place of the helper)."""
    from playwright.sync_api import sync_playwright

    from bench.bench_keyboard import CHROMIUM, free_port, wait_http

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is needed for the browser test ({CHROMIUM}); .ci/run installs it")
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=open(tmp_path / "app.log", "w"), stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--no-sandbox", "--disable-gpu"])
            poller = browser.new_page()
            poller.goto(f"http://127.0.0.1:{port}/?poll=1")
            poller.get_by_text("polling").wait_for()
            page = browser.new_page(accept_downloads=True)
            statuses: list[int] = []
            page.on("response", lambda r: "/media/" in r.url and r.url.endswith(".bin")
                    and statuses.append(r.status))

            def slow(route) -> None:  # noqa: ANN001 - a Playwright route
                time.sleep(1.0)  # 10 of the other session's reruns meanwhile
                route.continue_()

            page.route("**/media/*.bin", slow)
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("button", name="Prepare the file").click()
            button = page.get_by_role("button", name="Download the file")
            button.wait_for()
            time.sleep(1.0)  # the other session reruns meanwhile, as between two clicks
            with page.expect_download(timeout=30_000) as info:
                button.click()
            assert Path(info.value.path()).read_bytes() == bytes(range(256)) * 400
            assert statuses == [200]  # fetched once, by the click: later ones hit its cache
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=15)
