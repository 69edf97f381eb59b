"""Fixtures for the proof-of-reserves functional tests: the verifier page served over HTTP on
127.0.0.1 (a real http.server process) and Debian's headless Chromium driven by Playwright."""

from __future__ import annotations

import pathlib
import shutil
import sys
import urllib.request

import pytest

from tests.support.procs import Proc, free_port

WEB_DIR = pathlib.Path(__file__).resolve().parents[3] / "proofs" / "web"
CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync",
]


@pytest.fixture(scope="session")
def web_url(tmp_path_factory):
    port = free_port()
    workdir = tmp_path_factory.mktemp("web")
    proc = Proc("http", [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", WEB_DIR], workdir)
    proc.start()
    url = f"http://127.0.0.1:{port}/verify.html"
    try:
        proc.wait_ready(lambda: urllib.request.urlopen(url, timeout=2).status == 200, 20, "the page is served")
        yield url
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `deploy/dev/tools.sh test` (installs Debian's chromium)")
    if shutil.which("chromium") is None:
        pytest.fail("chromium is not on PATH")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, web_url):
    context = browser.new_context()
    origin = web_url.rsplit("/", 1)[0] + "/"
    foreign = []

    def only_the_page(route):  # the page is self-contained: anything else is a failure
        if route.request.url.startswith(origin):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_page)
    p = context.new_page()
    errors = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.goto(web_url)
    p.wait_for_selector("#ready[data-ready='1']", state="attached", timeout=10_000)
    yield p
    context.close()
    assert not errors, errors
    assert not foreign, f"the page tried to load {foreign}"


@pytest.fixture(scope="session")
def vector() -> dict:
    import json

    return json.loads((pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "por" / "por-vector.json").read_text())
