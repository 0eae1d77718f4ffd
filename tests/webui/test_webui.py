"""The web page in headless Chromium against a real ``heylookllm serve`` with the echo model.

Every browser context routes all requests: loopback ones go to the server, anything else is aborted, and the test
fails if the page tried one (the page ships every asset and reaches no network).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from heylook_core.testing import ServerProcess
from tests.webui.conftest import ADMIN_KEY, API_KEY, screenshot

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
DOCS_SHOT = Path(__file__).parents[2] / "docs" / "webui.png"


def open_ui(page, server: ServerProcess) -> None:
    page.goto(server.url + "/")
    page.wait_for_url(re.compile(r"/ui(#.*)?$"))
    page.locator("#model option[value='echo']").wait_for(state="attached")


def send(page, text: str) -> None:
    page.fill("#prompt", text)
    page.click("#send")


def last_reply(page):
    return page.locator(".message.assistant").last


def in_flight(server: ServerProcess, model: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=5).text
    match = re.search(rf'^heylook_model_in_flight\{{model="{model}"\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def choose(page, model: str) -> None:
    page.select_option("#model", model)


def set_setting(page, name: str, value: str) -> None:
    if page.locator("#settings").get_attribute("open") is None:
        page.locator("#settings summary").click()
    page.fill(f"#{name}", value)
    page.locator(f"#{name}").dispatch_event("change")


def model_row(page, model: str):
    name = page.locator(".model-id", has_text=re.compile(f"^{model}$"))
    return page.locator("#models-table tbody tr").filter(has=name)


# -- serving ---------------------------------------------------------------------------------------------------------


def test_root_sends_a_browser_to_the_page_and_probes_get_ollama_text(server: ServerProcess) -> None:
    browser_like = httpx.get(server.url + "/", headers={"accept": "text/html,*/*;q=0.8"}, follow_redirects=False)
    assert browser_like.status_code == 307 and browser_like.headers["location"] == "/ui"
    probe = httpx.get(server.url + "/")
    assert probe.status_code == 200 and probe.text == "Ollama is running"
    page = httpx.get(server.url + "/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(server.url + "/ui/app.js").headers["content-type"].startswith("text/javascript")
    missing = httpx.get(server.url + "/ui/nothing.js")
    assert missing.status_code == 404 and "message" in missing.json()["error"]
    assert httpx.get(server.url + "/ui/..%2Fplugin.py").status_code == 404
    assert f"web page on {server.url}/ (open it in a browser)" in server.log()


def test_page_loads_offline_and_lists_models_with_capabilities(page, server: ServerProcess, offline) -> None:
    open_ui(page, server)
    options = page.locator("#model option").all_inner_texts()
    assert "echo" in options and "slow" in options
    assert "vision" in page.locator("#capabilities").inner_text()
    assert page.locator("#attach-label").is_visible()  # echo has the vision capability
    # the page's Content-Security-Policy stops a request elsewhere before it is even attempted
    assert page.evaluate("fetch('https://example.com/x').then(() => 'sent', () => 'refused')") == "refused"
    assert offline.blocked == []
    # and the context's router notes one from a page without that policy (which the fixture would fail on)
    other = page.context.new_page()
    other.goto("about:blank")
    other.evaluate("fetch('https://example.com/y').catch(() => null)")
    other.wait_for_timeout(300)
    other.close()
    assert offline.blocked == ["https://example.com/y"]
    offline.blocked.clear()


# -- chat ------------------------------------------------------------------------------------------------------------


def test_reply_streams_token_by_token_with_speed_and_ttft(page, server: ServerProcess) -> None:
    open_ui(page, server)
    choose(page, "slow")
    words = " ".join(f"w{i}" for i in range(30))
    send(page, words)
    content = last_reply(page).locator(".content")
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = content.inner_text().strip()
        if text and (not seen or text != seen[-1]):
            seen.append(text)
        if text == words:
            break
        time.sleep(0.05)
    assert seen[-1] == words
    assert len(seen) >= 5, f"the reply did not grow token by token: {seen}"
    assert all(words.startswith(part) for part in seen)
    stats = last_reply(page).locator(".stats")
    stats.filter(has_text="tokens/s").wait_for()
    line = stats.inner_text()
    assert re.search(r"30 tokens · [\d.]+ tokens/s · first token \d+ ms · stop", line), line
    screenshot(page, "chat")


def test_stop_cancels_the_generation_on_the_server(page, server: ServerProcess) -> None:
    open_ui(page, server)
    choose(page, "slow")
    set_setting(page, "max_tokens", "400")  # 400 tokens at 60 ms: 24 s if nothing stopped it
    send(page, "please go on")
    last_reply(page).locator(".content").filter(has_text="lorem").wait_for()
    assert page.locator("#stop").is_visible()
    assert in_flight(server, "slow") == 1
    page.click("#stop")
    last_reply(page).locator(".stats").filter(has_text="stopped").wait_for()
    assert page.locator("#send").is_visible()
    deadline = time.monotonic() + 5
    while in_flight(server, "slow") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert in_flight(server, "slow") == 0, "the server kept generating after the page stopped"
    produced = last_reply(page).locator(".content").inner_text().split()
    assert 1 <= len(produced) < 100


def test_server_error_is_shown_with_its_message(page, server: ServerProcess) -> None:
    open_ui(page, server)
    send(page, "!error please")
    error = last_reply(page).locator(".error")
    error.wait_for()
    assert "scripted failure" in error.inner_text()
    # an error after the stream started (an SSE error event) is shown too
    send(page, "!midstream-error now")
    page.locator(".message.assistant").nth(1).locator(".error").wait_for()
    assert page.locator(".message.assistant").nth(1).locator(".error").inner_text().strip()
    # a 400 for a parameter out of range: the server's message, never a blank
    set_setting(page, "temperature", "7")
    send(page, "hot")
    third = page.locator(".message.assistant").nth(2).locator(".error")
    third.wait_for()
    assert "temperature" in third.inner_text()


def test_markdown_is_rendered_and_model_html_is_escaped(page, server: ServerProcess) -> None:
    open_ui(page, server)
    send(page, "**bold** <img src=x onerror=alert(1)> `code` [ok](https://example.org) [bad](javascript:alert(1))")
    content = last_reply(page).locator(".content")
    content.locator("strong").wait_for()
    assert content.locator("strong").inner_text() == "bold"
    assert content.locator("code").inner_text() == "code"
    assert content.locator("img").count() == 0
    assert "<img src=x onerror=alert(1)>" in content.inner_text()
    links = content.locator("a")
    assert links.count() == 1 and links.first.get_attribute("href") == "https://example.org"
    assert links.first.get_attribute("rel") == "noopener noreferrer"


def test_reasoning_is_shown_apart_and_folded(page, server: ServerProcess) -> None:
    open_ui(page, server)
    page.locator("#settings summary").click()
    page.check("#enable_thinking")
    page.locator("#settings summary").click()
    send(page, "three little words")
    reasoning = last_reply(page).locator("details.reasoning")
    last_reply(page).locator(".stats").filter(has_text="tokens/s").wait_for()
    assert reasoning.get_attribute("open") is None
    assert "The user wrote 3 words." in reasoning.locator(".reasoning-text").text_content()
    assert last_reply(page).locator(".content").inner_text().strip() == "three little words"


def test_image_attachment_goes_as_a_data_url(page, server: ServerProcess, tmp_path: Path) -> None:
    import base64

    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    image = tmp_path / "dot.png"
    image.write_bytes(png)
    open_ui(page, server)
    page.set_input_files("#attach", str(image))
    page.locator("#attachments img").wait_for()
    send(page, "what is this")
    last_reply(page).locator(".stats").filter(has_text="tokens/s").wait_for()
    assert last_reply(page).locator(".content").inner_text().strip() == "[1 image] what is this"
    assert page.locator(".message.user img.attached").get_attribute("src").startswith("data:image/png;base64,")


def test_conversations_survive_a_reload_and_can_be_renamed_exported_deleted(page, server: ServerProcess) -> None:
    open_ui(page, server)
    set_setting(page, "temperature", "0.3")
    set_setting(page, "system", "Be brief.")
    send(page, "remember me")
    last_reply(page).locator(".stats").filter(has_text="tokens/s").wait_for()
    page.reload()
    page.locator(".message.user").filter(has_text="remember me").wait_for()
    assert last_reply(page).locator(".content").inner_text().strip() == "remember me"
    assert page.input_value("#temperature") == "0.3" and page.input_value("#system") == "Be brief."
    page.click("#rename-chat")
    page.fill("#ask-input", "Kept chat")
    page.click("#ask-ok")
    page.locator(".conversation-item[aria-current='true']").filter(has_text="Kept chat").wait_for()
    with page.expect_download() as download:
        page.click("#export-chat")
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["title"] == "Kept chat" and exported["system"] == "Be brief."
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant"]
    assert exported["messages"][1]["stats"]["completion_tokens"] == 2
    page.click("#new-chat")
    assert page.locator(".conversation-item").count() == 2
    assert page.locator(".message").count() == 0
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-chat")
    page.locator(".conversation-item").filter(has_text="Kept chat").wait_for()
    assert page.locator(".conversation-item").count() == 1


# -- keys ------------------------------------------------------------------------------------------------------------


def test_the_page_asks_once_for_an_api_key_and_keeps_it_for_the_session(page, keyed_server: ServerProcess) -> None:
    page.goto(keyed_server.url + "/ui")
    dialog = page.locator("#ask")
    dialog.wait_for(state="visible")
    assert "API key" in page.locator("#ask-title").inner_text()
    assert "missing API key" in page.locator("#ask-text").inner_text()  # the server's message
    page.fill("#ask-input", API_KEY)
    page.click("#ask-ok")
    page.locator("#model option[value='echo']").wait_for(state="attached")
    assert page.evaluate("sessionStorage.getItem('heylook.apiKey')") == API_KEY
    assert page.evaluate("Object.values(localStorage).join(' ')").find(API_KEY) == -1
    send(page, "keyed hello")
    last_reply(page).locator(".stats").filter(has_text="tokens/s").wait_for()
    page.reload()  # the same tab's session: no second prompt
    page.locator("#model option[value='echo']").wait_for(state="attached")
    assert not dialog.is_visible()


def test_a_refused_key_shows_the_servers_message(page, keyed_server: ServerProcess) -> None:
    page.goto(keyed_server.url + "/ui")
    page.locator("#ask").wait_for(state="visible")
    page.fill("#ask-input", "wrong-key")
    page.click("#ask-ok")
    page.locator("#toast").filter(has_text="invalid API key").wait_for()


# -- the server view -------------------------------------------------------------------------------------------------


def test_server_view_lists_models_plugins_and_loads_with_the_admin_key(page, server: ServerProcess) -> None:
    hello = {"model": "echo", "messages": [{"role": "user", "content": "x"}]}
    httpx.post(server.url + "/v1/chat/completions", json=hello, timeout=10)
    open_ui(page, server)
    page.click("#tab-server")
    model_row(page, "echo").locator(".state").filter(has_text="loaded").wait_for()
    assert "ok" in page.locator("#server-status").inner_text()
    plugins = page.locator("#plugins-table tbody")
    plugins.locator("tr", has_text="heylook-webui").locator(".state").filter(has_text="loaded").wait_for()
    # unload then load "slow" through the admin routes: the page asks for the admin key
    slow = model_row(page, "slow")
    slow.get_by_role("button", name="load slow", exact=True).click()
    page.locator("#ask").wait_for(state="visible")
    assert "Admin key" in page.locator("#ask-title").inner_text()
    page.fill("#ask-input", ADMIN_KEY)
    page.click("#ask-ok")
    slow.locator(".state").filter(has_text="loaded").wait_for()
    page.locator("#server-action").filter(has_text="load slow: done").wait_for()
    assert httpx.get(server.url + "/v1/models/slow").json()["state"] == "loaded"
    slow.get_by_role("button", name="unload slow", exact=True).click()
    slow.locator(".state").filter(has_text=re.compile("^unloaded$")).wait_for()
    slow.get_by_role("button", name="pin slow", exact=True).click()  # loads it and keeps it loaded
    slow.locator(".state").filter(has_text=re.compile("^loaded$")).wait_for()
    page.locator("#server-action").filter(has_text="pin slow: done").wait_for()
    assert httpx.get(server.url + "/v1/models/slow").json()["pinned"] is True
    slow.get_by_role("button", name="unpin slow", exact=True).click()
    page.locator("#server-action").filter(has_text="unpin slow: done").wait_for()
    assert httpx.get(server.url + "/v1/models/slow").json()["pinned"] is False
    slow.get_by_role("button", name="pin slow", exact=True).wait_for()
    # plots of recent requests (heylook-analytics is installed here)
    page.locator("#analytics").wait_for(state="visible")
    page.locator("#plots figure").first.wait_for()
    assert page.locator("#plots figcaption").all_inner_texts() == [
        "Tokens per second",
        "Time to first token",
        "Requests per minute",
    ]
    assert page.locator("#plots svg circle").count() >= 1
    shot = screenshot(page, "server")
    assert shot.stat().st_size > 0


def test_phone_sized_window(browser, server: ServerProcess, offline) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    context.route("**/*", offline)
    page = context.new_page()
    try:
        open_ui(page, server)
        assert not page.locator("#sidebar").is_visible()
        page.click("#toggle-sidebar")
        assert page.locator("#sidebar").is_visible()
        page.click("#new-chat")
        assert not page.locator("#sidebar").is_visible()
        send(page, "small screen")
        last_reply(page).locator(".stats").filter(has_text="tokens/s").wait_for()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways on a phone: {width}px"
        screenshot(page, "phone")
    finally:
        context.close()
    assert offline.blocked == []


# -- accessibility ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("context", [{"bypass_csp": True}], indirect=True)  # axe is injected as an inline script
def test_no_serious_accessibility_violations(page, server: ServerProcess) -> None:
    open_ui(page, server)
    send(page, "# Title\n\nSome **text** and `code`.\n\n```python\nprint(1)\n```")
    last_reply(page).locator(".stats").filter(has_text="tokens/s").wait_for()
    page.locator("#settings summary").click()
    page.check("#enable_thinking")
    page.locator("#settings summary").click()
    send(page, "Show me a *list*:\n\n- one\n- two with `code`\n\n```js\nconsole.log('hi')\n```")
    last_reply(page).locator(".stats").filter(has_text="tokens/s").wait_for()
    screenshot(page, "chat-markdown")  # the one in the README (docs/webui.png)
    page.add_script_tag(path=str(AXE))
    found = []
    for view in ("chat", "server"):
        page.click(f"#tab-{view}")
        page.wait_for_timeout(300)
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        found += [
            f"{view}: {v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
    assert found == []
