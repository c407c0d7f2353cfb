"""The report page in a real browser: headless Chromium, driven over the DevTools protocol.

Chromium is started with ``--remote-debugging-pipe``: DevTools messages are NUL-terminated JSON
on file descriptors 3 (to the browser) and 4 (from it), so the client below needs nothing but
the standard library. Console errors come from three DevTools events, enabled before the page
is loaded: ``Runtime.exceptionThrown`` (uncaught exceptions), ``Runtime.consoleAPICalled`` with
type ``error`` or ``assert`` (``console.error``), and ``Log.entryAdded`` at level ``error``
(failed loads, blocked requests, CSP violations).
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import math
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from matplotlib.image import imread

import faithmap
from faithmap.bench.report import write_report
from faithmap.bench.report.data import ReportData, ReportRow
from faithmap.bench.suites import DEFAULT
from faithmap.data import make_shapes
from faithmap.zoo import BUILTIN_MODELS
from test_report import NASTY, make_data

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TIMEOUT = 90.0
"""Seconds any one browser step may take; generous, as CI machines are shared."""
WIDTH, HEIGHT = 1280, 1600
LAUNCHER = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
    "os.execv(sys.argv[3], sys.argv[3:])"
)
"""Runs Chromium with the DevTools pipe on descriptors 3 (commands) and 4 (answers)."""

if not Path(CHROMIUM).exists() and not os.environ.get("CI"):  # CI installs it: fail there
    pytest.skip("Chromium is not installed (apt-get install chromium)", allow_module_level=True)


class Browser:
    """A headless Chromium and a DevTools client over its pipe."""

    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="faithmap-chromium-")
        to_read, self.to_browser = os.pipe()
        self.from_browser, to_write = os.pipe()
        # a small launcher moves the child's ends to descriptors 3 and 4, where Chromium expects
        # them, then becomes Chromium; copies numbered 10 and up cannot be overwritten by that
        child_in = fcntl.fcntl(to_read, fcntl.F_DUPFD, 10)
        child_out = fcntl.fcntl(to_write, fcntl.F_DUPFD, 10)
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
        flags += ["--disable-dev-shm-usage", "--disable-background-networking"]  # containers
        flags += ["--remote-debugging-pipe", f"--user-data-dir={self.profile}", "about:blank"]
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(child_in), str(child_out), CHROMIUM, *flags],
            pass_fds=(child_in, child_out),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in {to_read, to_write, child_in, child_out}:
            os.close(fd)
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self.from_browser], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self.from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium exited with code {self.process.poll()}")
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        decoded: dict[str, Any] = json.loads(message)
        return decoded

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result; events are kept in order."""
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method} failed: {answer['error']}")
                result: dict[str, Any] = answer["result"]
                return result
            self.events.append(answer)

    def wait_for(self, event: str, session: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not any(
            e.get("method") == event and e.get("sessionId") == session for e in self.events
        ):
            self.events.append(self._receive(deadline))

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self.process.wait(timeout=TIMEOUT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            os.close(self.to_browser)
            os.close(self.from_browser)
            shutil.rmtree(self.profile, ignore_errors=True)


def _problem(event: dict[str, Any]) -> str | None:
    """The console error an event reports, or None."""
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        return f"uncaught: {details.get('exception', {}).get('description', details['text'])}"
    if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
        return "console.error: " + " ".join(str(a.get("value", a)) for a in params["args"])
    if method == "Log.entryAdded" and params["entry"]["level"] == "error":
        entry = params["entry"]
        return f"{entry['source']}: {entry['text']} {entry.get('url', '')}".strip()
    return None


class Page:
    """One page opened in its own tab, with its console errors collected from the start."""

    def __init__(self, browser: Browser, path: Path, width: int = WIDTH) -> None:
        self.browser, self.width = browser, width
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = browser.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            browser.call(f"{domain}.enable", self.session)
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            self.session,
            width=width,
            height=HEIGHT,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.start = len(browser.events)
        browser.call("Page.navigate", self.session, url=path.resolve().as_uri())
        browser.wait_for("Page.loadEventFired", self.session)

    def evaluate(self, expression: str) -> Any:
        result = self.browser.call(
            "Runtime.evaluate",
            self.session,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} raised {result['exceptionDetails']}")
        return result["result"].get("value")

    def problems(self) -> list[str]:
        self.evaluate("new Promise(r => setTimeout(r, 200))")  # let late errors arrive
        mine = [e for e in self.browser.events[self.start :] if e.get("sessionId") == self.session]
        return [p for p in map(_problem, mine) if p is not None]

    def screenshot(self, full: bool = False) -> bytes:
        params: dict[str, Any] = {"format": "png"}
        if full:
            size = self.browser.call("Page.getLayoutMetrics", self.session)["cssContentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": self.width,
                "height": size["height"],
                "scale": 1,
            }
        data = self.browser.call("Page.captureScreenshot", self.session, **params)["data"]
        return base64.b64decode(data)


def ink_fraction(png: bytes) -> float:
    """Fraction of the pixels that differ visibly from the most common colour (the background)."""
    pixels = (imread(io.BytesIO(png), format="png")[..., :3] * 255).round().astype(np.int64)
    flat = pixels.reshape(-1, 3)
    packed = flat @ np.array([1 << 16, 1 << 8, 1])
    background = flat[np.bincount(packed).argmax() == packed][0]
    return float((np.abs(flat - background).max(1) > 8).mean())


def check_page(browser: Browser, path: Path, min_ink: float = 0.05, width: int = WIDTH) -> Page:
    """Open ``path``; fail on any console error or a (nearly) blank screenshot."""
    page = Page(browser, path, width)
    problems = page.problems()
    assert not problems, f"console errors in {path.name}: {problems}"
    ink = ink_fraction(page.screenshot())
    assert ink >= min_ink, f"{path.name} looks blank: {ink:.1%} of its pixels are drawn"
    return page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    started = Browser()
    yield started
    started.close()


def test_report_loads_cleanly_and_sorts(browser: Browser, tmp_path: Path) -> None:
    page = check_page(browser, write_report(make_data(), tmp_path / "report.html"), min_ink=0.2)
    decoded = "Array.from(document.querySelectorAll('img[src]')).filter(i => i.naturalWidth > 0)"
    images = page.evaluate(f"{decoded}.length")  # every picture but the empty viewer decoded
    assert images == page.evaluate("document.images.length") - 1 >= 3
    assert page.evaluate("document.querySelectorAll('script').length") == 1  # no injected one
    assert page.evaluate("typeof window.injected") == "undefined"
    # methods come sorted by mean rank; a click on its header reverses, a second restores
    read = "Array.from(document.querySelectorAll('td.meanrank')).map(c => Number(c.dataset.sort))"
    ascending = page.evaluate(read)
    assert ascending == sorted(ascending) and len(ascending) == 3
    page.evaluate("document.querySelector('th[title^=\"mean of the ranks\"]').click()")
    assert page.evaluate(read) == sorted(ascending, reverse=True)
    page.evaluate("document.querySelector('th[title^=\"mean of the ranks\"]').click()")
    assert page.evaluate(read) == ascending
    page.evaluate("document.querySelectorAll('th[data-col]').forEach(h => h.click())")
    assert page.problems() == []
    names = page.evaluate(
        "Array.from(document.querySelectorAll('td.method')).map(c => c.textContent)"
    )
    assert NASTY in names  # shown as text, literally


def test_check_fails_on_errors(browser: Browser, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    body = "<h1>" + "A heading with plenty of ink " * 20 + "</h1>"
    page.write_text(
        f"<!DOCTYPE html><html><body>{body}<script>notDefined();</script></body></html>"
    )
    with pytest.raises(AssertionError, match="notDefined is not defined"):
        check_page(browser, page)
    logged = tmp_path / "logged.html"
    logged.write_text(f"<html><body>{body}<script>console.error('bad', 1)</script></body></html>")
    with pytest.raises(AssertionError, match=r"console\.error: bad 1"):
        check_page(browser, logged)
    missing = tmp_path / "missing.html"
    missing.write_text(f"<html><body>{body}<img src='nowhere.png'></body></html>")
    with pytest.raises(AssertionError, match=r"network: Failed to load resource.*nowhere\.png"):
        check_page(browser, missing)


def test_check_fails_on_a_blank_page(browser: Browser, tmp_path: Path) -> None:
    page = tmp_path / "blank.html"
    page.write_text("<!DOCTYPE html><html><body style='background:#f5f7fa'></body></html>")
    with pytest.raises(AssertionError, match="looks blank"):
        check_page(browser, page)


def default_shaped_data() -> ReportData:
    """A report shaped like the default benchmark's: the built-in models, every registered
    method, the default suite's metrics, 8 shapes of 64 x 64 with masks and classes, and two
    methods without a result on the vit (as LRP and Guided Backprop)."""
    generator = torch.Generator().manual_seed(0)
    models, methods = BUILTIN_MODELS, faithmap.METHODS.names()
    metrics = DEFAULT.metrics + DEFAULT.mask_metrics
    absent = {("vit", "lrp"): "LRP has no rule for LayerNorm", ("vit", "guided_backprop"): "GELU"}
    shapes = make_shapes(8, seed=0)
    fractions = torch.linspace(0, 1, 29)
    rows, curves, maps = [], {}, {}
    for model in models:
        for k, method in enumerate(methods):
            if (model, method) in absent:
                continue
            for metric in metrics:
                values = torch.rand(8, generator=generator).tolist()
                rows += [
                    ReportRow(i, model, method, metric, v, 10.0 * k, 0.1, 29, 0.1)
                    for i, v in enumerate(values)
                ]
            rise = fractions ** (0.2 + 3 * torch.rand(8, 1, generator=generator))
            curves[(model, method, "insertion")] = (fractions, rise)
            curves[(model, method, "deletion")] = (fractions, 1 - rise)
            maps[(model, method)] = torch.randn(8, 64, 64, generator=generator)
    return ReportData(
        run_id="0123456789abcdef",
        config={"models": list(models)},
        rows=rows,
        higher_is_better={m: m != "deletion" for m in metrics},
        curves=curves,
        attributions=maps,
        images=shapes.images,
        masks=shapes.masks,
        versions={"faithmap": "0.1.0"},
        created="2026-12-05T17:44:00+00:00",
        command="faithmap bench",
        labels=[int(v) for v in shapes.labels],
        predicted={m: [int(v) for v in shapes.labels] for m in models},
        class_names=shapes.class_names,
        skipped=absent,
    )


def test_default_report_is_readable_at_1400_px(browser: Browser, tmp_path: Path) -> None:
    data = default_shaped_data()
    page = check_page(browser, write_report(data, tmp_path / "report.html"), 0.2, width=1400)
    # the summary column is on screen without scrolling, for every method
    boxes = page.evaluate(
        "Array.from(document.querySelectorAll('th.summary, td.meanrank')).map(c => {"
        "const r = c.getBoundingClientRect(); return [r.left, r.right, r.width]; })"
    )
    assert len(boxes) == 1 + len(data.methods)
    assert all(left >= 0 and right <= 1400 and width > 30 for left, right, width in boxes)
    scroller = page.evaluate(
        "document.querySelector('.leaderboard').parentNode.getBoundingClientRect().right"
    )
    assert all(right <= scroller for _, right, _ in boxes)  # not hidden by the scroll box
    header = page.evaluate("document.querySelector('th.summary').textContent")
    assert header.startswith("mean rank") and "lower is better" in header
    # curve colours: one per method, far apart; the legend hides and shows lines
    strokes = page.evaluate(
        "Array.from(document.querySelectorAll('.curves polyline')).map(l => "
        "[l.getAttribute('class'), getComputedStyle(l).stroke])"
    )
    by_method = dict(strokes)
    assert len(by_method) == len(data.methods) == len(set(by_method.values()))
    rgb = [tuple(map(int, re.findall(r"\d+", colour)[:3])) for colour in by_method.values()]
    assert min(math.dist(a, b) for i, a in enumerate(rgb) for b in rgb[i + 1 :]) > 20
    hidden = "document.querySelectorAll('.curves polyline.off').length"
    page.evaluate("document.querySelector('button[data-show=none]').click()")
    assert page.evaluate(hidden) == len(strokes)
    page.evaluate("document.querySelector('input[data-method=\"0\"]').click()")
    assert page.evaluate(hidden) == len(strokes) - len(data.models) * 2
    # every map at least 96 px, on every model's tab; a click enlarges it
    sizes = "Array.from(document.querySelectorAll('.tabpanel:not([hidden]) img.cell')).map(i => {"
    sizes += "const r = i.getBoundingClientRect(); return Math.min(r.width, r.height); })"
    for k, model in enumerate(data.models):
        page.evaluate(f"document.querySelector('button[data-tab=\"{k}\"]').click()")
        shown = page.evaluate(sizes)
        expected = 8 * (1 + len(data.methods) - sum(m == model for m, _ in data.skipped))
        assert len(shown) == expected and min(shown) >= 96, (model, min(shown))
    page.evaluate("document.querySelector('.tabpanel:not([hidden]) img.cell').click()")
    enlarged = "document.querySelector('.lightbox img').getBoundingClientRect().width"
    assert page.evaluate("document.querySelector('.lightbox').hidden") is False
    assert page.evaluate(enlarged) > 300
    page.evaluate("document.querySelector('.lightbox').click()")
    assert page.evaluate("document.querySelector('.lightbox').hidden") is True
    # the verdict: one sentence per model
    verdict = page.evaluate(
        "Array.from(document.querySelectorAll('#verdict li')).map(l => l.textContent)"
    )
    assert [line.split(":")[0] for line in verdict] == list(data.models)
    assert all(
        "best on localisation" in line and "within the 95% interval" in line for line in verdict
    )
    assert page.problems() == []
