"""`sessiongate console` in a real headless Chromium (Debian's package, driven by Playwright) on the
sandbox: Alice asks for access from the page, Bob approves it from his own console, Alice sees the grant
counting down, and ends it ("I'm done"). The world (moto, the real handlers) says what happened. On the
way: the launch URL's fragment signs one tab in, once (a second tab with it is refused), a reload keeps
the tab signed in, and Bob's console is opened as `sessiongate console` opens it (its redirect file).

CI installs Chromium (.ci/run): there (``CI=true`` or ``SESSIONGATE_REQUIRE_BROWSER=1``, which .ci/run
sets) a missing browser fails this test; elsewhere it skips, saying why.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.console import Demo
from sessiongate_cli.console import ConsoleServer, redirect_file

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is missing (pip install -r requirements-dev.txt)"
    return None


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    missing = _missing()
    if missing:
        if os.environ.get("CI", "").lower() == "true" or os.environ.get("SESSIONGATE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"the browser test must run here (CI) but cannot: {missing}")
        pytest.skip(missing)
    world = Demo()
    yield world
    world.close()


@pytest.fixture(scope="module")
def consoles(demo: Demo) -> Iterator[dict[str, ConsoleServer]]:
    servers = {name: ConsoleServer(demo.backend(name), demo="sandbox demo") for name in ("alice", "bob")}
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser(consoles: dict[str, ConsoleServer]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="sessiongate-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            context.set_default_timeout(TIMEOUT_MS)
            yield context
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


class Watched:
    """A page with every request it makes and every error it logs (CSP violations are errors)."""

    def __init__(self, context: Any, server: ConsoleServer, url: str | None = None) -> None:
        self.page = context.new_page()
        self.origin = f"http://127.0.0.1:{server.port}"
        self.urls: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.urls.append(request.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.entry = url or server.url
        self.page.goto(self.entry)

    def check_clean(self) -> None:
        assert self.errors == []
        # (but the redirect file it was opened on, if any)
        assert [u for u in self.urls if u != self.entry and not u.startswith(self.origin + "/")] == []


def slot_tags(demo: Demo, user: str) -> dict[str, str]:
    with demo.lock:
        tags = demo.world.client("iam").list_user_tags(UserName=user)["Tags"]
    return {t["Key"]: t["Value"] for t in tags if t["Key"].startswith("SecurityAllowSession")}


def test_request_approve_countdown_and_done_in_a_real_browser(
    demo: Demo, consoles: dict[str, ConsoleServer], browser: Any
) -> None:
    from playwright.sync_api import expect

    alice = Watched(browser, consoles["alice"])
    redirect = redirect_file(consoles["bob"].url)
    try:
        bob = Watched(browser, consoles["bob"], redirect.as_uri())
        expect(bob.page.locator("#identity")).to_contain_text("bob")
    finally:
        shutil.rmtree(redirect.parent)
    page = alice.page
    expect(page.locator("#identity")).to_contain_text("alice")
    # The launch URL signed the tab in and was replaced by one without the token; no cookie was set.
    assert page.url == f"{alice.origin}/"
    assert browser.cookies() == []
    assert bob.page.url == f"{bob.origin}/"
    # Once only: the same launch URL in another tab signs nothing in.
    again = browser.new_page()
    again.goto(consoles["alice"].url)
    expect(again.locator("#error")).to_contain_text("used already")
    expect(again.locator("#identity")).to_have_text("…")
    again.close()
    # A reload keeps the tab signed in (sessionStorage).
    page.reload()
    expect(page.locator("#identity")).to_contain_text("alice")

    # Alice asks for api-1 from the picker (the instances the policy lets her request).
    page.get_by_role("button", name="Request access").click()
    picker = page.get_by_label("Instance")
    expect(picker.locator("option", has_text="api-1")).to_have_count(1)
    # Every instance of the demo but the one InstanceDeniedTag puts out of scope, with its rule.
    assert sorted(
        o.split(" (")[0] + " " + o.split(", ")[1] for o in picker.locator("option").all_text_contents()
    ) == [
        "api-1 rule dev",
        "db-1 rule prod",
        "web-1 rule dev",
    ]
    api1 = next(o for o in picker.locator("option").all_text_contents() if o.startswith("api-1"))
    picker.select_option(label=api1)
    expect(page.locator("#instance-help")).to_contain_text("At most 120 minutes")
    page.get_by_label("Duration (minutes)").fill("10")
    page.get_by_label("Reason (shown to approvers)").fill("restart the api workers")
    page.get_by_role("button", name="Send request").click()
    expect(page.locator("#announce")).to_have_text("Request sent for approval")
    card = page.locator("article", has_text="api-1")
    expect(card.locator(".status")).to_have_text("PENDING")
    assert slot_tags(demo, "alice") == {}

    # Bob sees it waiting for him, and approves it with a comment (keyboard: Enter on the button).
    bob.page.get_by_role("button", name=re.compile("^Approvals")).click()
    waiting = bob.page.locator("article", has_text="alice on api-1")
    # (and the demo world's own: Dave's request for web-1 waits for Bob too)
    expect(bob.page.locator("article", has_text="dave on web-1")).to_have_count(1)
    expect(waiting).to_contain_text("restart the api workers")
    waiting.get_by_label("Comment (required to reject)").fill("ok, 10 minutes")
    waiting.get_by_role("button", name="Approve").focus()
    bob.page.keyboard.press("Enter")
    expect(bob.page.locator("#announce")).to_have_text("Request approved")
    expect(bob.page.locator("article", has_text="alice on api-1")).to_have_count(0)

    # Alice's page shows the grant ACTIVE, counting down; IAM has her slot tag for that instance.
    page.get_by_role("button", name="My requests").click()
    expect(card.locator(".status")).to_have_text("ACTIVE")
    countdown = card.locator(".countdown")
    expect(countdown).to_have_text(re.compile(r"^(09:[0-5]\d|10:00) left$"))
    first = countdown.text_content()
    expect(countdown).not_to_have_text(first or "", timeout=3000)  # it ticks
    instance = api1.split("(")[1].split(")")[0]
    assert slot_tags(demo, "alice") == {"SecurityAllowSessionInstance": instance}

    # "I'm done": the grant ends now, the tag is gone, the history says REVOKED.
    card.get_by_role("button", name="I'm done").click()
    expect(page.locator("#announce")).to_have_text("Access ended")
    expect(page.locator("article", has_text="api-1")).to_have_count(0)
    assert slot_tags(demo, "alice") == {}
    page.get_by_role("button", name="History").click()
    expect(page.locator("tr", has_text="api-1")).to_contain_text("REVOKED")
    expect(page.locator("tr", has_text="web-1")).to_contain_text("EXPIRED")  # the demo's first request

    alice.check_clean()
    bob.check_clean()
