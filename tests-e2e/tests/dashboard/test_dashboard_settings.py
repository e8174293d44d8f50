"""The dashboard's settings pages in a real browser: Routing, Tools, API keys, Budgets, Cache and Providers.

Each page loads clean, draws its charts, fits a 375 px window and leaves a screenshot; what an owner
does there (a key, a provider, a model switch, the preferences) changes what the next SDK request
through the gateway does.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
import openai
import pytest
from playwright.async_api import Page, expect

from accounts import logged
from dashboard_browser import Owner, assert_charts_drawn, assert_fits_375, problems, screenshot, visit

SCRIPT_TOOL = "<script>alert('tool')</script>"
# More tools than the optimizer forwards as they are, so requests are routed; one named like a script.
TOOLS = {
    "get_weather": "Current weather and forecast for a city.",
    "get_stock_price": "Latest trading price of a stock ticker symbol.",
    "convert_currency": "Convert an amount of money between two currencies.",
    "book_flight": "Book a flight between two airports.",
    "search_hotels": "Find hotel rooms in a city for given dates.",
    "send_email": "Send an email message to a recipient.",
    "translate_text": "Translate text into another language.",
    "create_calendar_event": "Create an event in the user's calendar.",
    "set_reminder": "Remind the user of something at a given time.",
    SCRIPT_TOOL: "A tool whose name is markup.",
}

# The model the balancing test spreads over two deployments of the fake OpenAI's gpt-4o-mini. The fakes
# answer any model name but one holding `fake-500` (tests-e2e/fakes/scenario.py): unbalanced, this one is
# its provider's 500, which the OpenAI SDK raises as InternalServerError (Orqen's 502).
BALANCED = "team-model-fake-500"


def api(stack: Any, key: str) -> httpx.AsyncClient:
    """The account API as the owner's applications call it."""
    return httpx.AsyncClient(base_url=stack.info.edge_url, headers={"authorization": f"Bearer {key}"}, timeout=30)


def sdk(stack: Any, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{stack.info.edge_url}/v1", api_key=key, max_retries=0)


async def chat(stack: Any, key: str, model: str = "gpt-4o-mini", **body: Any) -> Any:
    """A chat completion through the OpenAI SDK; the raw answer, to read Orqen's headers."""
    messages = body.pop("messages", [{"role": "user", "content": "hello"}])
    return await sdk(stack, key).chat.completions.with_raw_response.create(model=model, messages=messages, **body)


async def tool_traffic(stack: Any, owner: Owner) -> list[str]:
    """Requests offering ten tools whose answers call one: two A/B controls (every tool forwarded, so
    the calibration has data) and two routed as usual. Returns their ids once accounting logged them."""
    tools = [
        {"type": "function", "function": {"name": name, "description": text, "parameters": {"type": "object"}}}
        for name, text in TOOLS.items()
    ]
    messages = [{"role": "user", "content": 'What is the weather in Paris? call get_weather {"city": "Paris"}'}]

    async def routed() -> str:
        """The id of the next request the optimizer routed (a toolset it never saw is indexed first)."""
        for _ in range(60):
            answered = await chat(stack, owner.api_key, messages=messages, tools=tools)
            if answered.headers.get("x-orqen-routing", "passthrough") != "passthrough":
                return str(answered.headers["x-request-id"])
            await asyncio.sleep(0.5)
        raise AssertionError("the toolset was never routed")

    preferences = "/v1/account/routing/preferences"
    async with api(stack, owner.api_key) as account:
        await account.put(preferences, json={"ab_control_share": 1.0})
        ids = [await routed(), await routed()]
        await account.put(preferences, json={"ab_control_share": 0.0})
        ids += [await routed(), await routed()]
        await account.put(preferences, json={"ab_control_share": 0.05})
        for request_id in ids:
            await logged(account, request_id)
    return ids


async def offered(stack: Any, owner: Owner, tool: str) -> int:
    """How many requests offered `tool`, as the account API reports it."""
    async with api(stack, owner.api_key) as account:
        tools = (await account.get("/v1/account/tools/health")).json()["data"]
    count: int = next(t["offered"] for t in tools if t["name"] == tool)
    return count


async def csrf_token(page: Page) -> str:
    token = await page.get_attribute("input[name=csrf_token]", "value")
    assert token
    return token


async def test_routing_and_tools_pages_show_the_accounts_routing(page: Page, owner: Owner, stack: Any) -> None:
    request_ids = await tool_traffic(stack, owner)
    alerts: list[str] = []
    page.on("dialog", lambda dialog: alerts.append(dialog.message))

    await visit(page, "/dashboard/routing")
    await assert_charts_drawn(page, at_least=1)
    await expect(page.locator("#preferences select[name=mode]")).to_have_value("auto")
    await expect(page.locator("tr[data-model='gpt-4o-mini']")).to_have_count(1)
    # Recent decisions link to each request's page.
    for request_id in request_ids:
        await expect(page.locator(f"a[href='/dashboard/requests/{request_id}']")).to_have_count(1)
    await expect(page.locator(".facts")).to_contain_text("gpt-4o-mini")  # most used model
    await assert_fits_375(page)
    await screenshot(page, "routing")

    await visit(page, "/dashboard/tools")
    await assert_charts_drawn(page, at_least=1)
    row = page.locator("table.tools tr", has=page.locator("td.name", has_text="get_weather"))
    await expect(row.locator("td.num").first).to_have_text(str(await offered(stack, owner, "get_weather")))
    # A tool named like a script is shown as text, never run.
    await expect(page.locator("td.name", has_text=SCRIPT_TOOL)).to_have_count(1)
    assert await page.evaluate("document.querySelectorAll('main script').length") == 0
    await assert_fits_375(page)
    await screenshot(page, "tools")
    assert not alerts, f"a tool name ran as a script: {alerts}"


async def test_a_key_created_in_the_dashboard_works_until_it_is_revoked(page: Page, stack: Any) -> None:
    await visit(page, "/dashboard/keys")
    await page.fill("input[name=name]", "from-the-dashboard")
    await page.click("text=Create key")
    shown = page.locator("#new-key")
    await expect(shown).to_have_text(re.compile(r"^sk-orq-"))
    plaintext = (await shown.text_content() or "").strip()
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await page.click("button[data-copy='#new-key']")
    await expect(page.locator("button[data-copy='#new-key']")).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == plaintext
    await assert_fits_375(page)
    await screenshot(page, "keys")

    answered = await chat(stack, plaintext)
    assert answered.http_response.status_code == 200

    # The key is listed with its last use; its plaintext is on no page but the one that created it.
    await visit(page, "/dashboard/keys")
    row = page.locator("tr", has_text="from-the-dashboard")
    await expect(row).to_have_count(1)
    assert plaintext not in await page.content()
    await expect(row.locator("td").nth(3)).not_to_have_text("never")
    await row.locator("text=Revoke…").click()
    await expect(row).to_contain_text("Applications using it are refused at once")
    await row.locator("button", has_text="Revoke key").click()
    await expect(row.locator(".badge")).to_contain_text("revoked")
    assert not problems(page)

    with pytest.raises(openai.AuthenticationError):
        await chat(stack, plaintext)


async def test_a_budget_set_in_the_dashboard_refuses_requests_once_spent_until_deleted(
    page: Page, owner: Owner, stack: Any
) -> None:
    await visit(page, "/dashboard/budgets")
    table = page.locator("table.budgets")
    await expect(table).to_contain_text("No budgets")
    await page.fill("input[name=soft_percent]", "0")  # refused by the account API's own limits, shown in the form
    await page.click("text=Save budget")
    await expect(page.locator("#budgets-panel .error")).to_contain_text("soft_percent")
    await page.select_option("select[name=period]", "month")
    await page.fill("input[name=max_tokens]", "1")
    await page.click("text=Save budget")
    row = table.locator("tbody tr", has_text="Account")
    await expect(row).to_contain_text("month")
    await expect(row.locator(".badge")).to_have_text("ok")

    assert (await chat(stack, owner.api_key)).http_response.status_code == 200  # admitted: 1 token was left
    for _ in range(100):  # accounting counts the request's tokens once its event is consumed
        await visit(page, "/dashboard/budgets")
        if await row.locator(".badge").text_content() == "exceeded":
            break
        await asyncio.sleep(0.1)
    await expect(row.locator(".badge")).to_have_text("exceeded")
    with pytest.raises(openai.RateLimitError):
        await chat(stack, owner.api_key)
    await assert_fits_375(page)
    await screenshot(page, "budgets")

    confirmed: list[str] = []
    page.once("dialog", lambda dialog: confirmed.append(dialog.message) or dialog.accept())
    await row.locator("button", has_text="Delete").click()
    await expect(table).to_contain_text("No budgets")
    assert confirmed == ["Delete this month budget? Its limits stop applying at once."]
    assert not problems(page)
    assert (await chat(stack, owner.api_key)).http_response.status_code == 200


async def test_a_keys_limits_set_in_the_dashboard_apply_to_its_next_request(
    page: Page, owner: Owner, stack: Any
) -> None:
    await visit(page, "/dashboard/budgets")
    row = page.locator("table.key-limits tbody tr", has_text="e2e")  # the owner's key
    models = row.locator("input[name=allowed_models]")
    await expect(models).to_have_value("")
    await row.locator("input[name=rpm]").fill("-1")  # refused by the account API's own limits, shown in the form
    await row.locator("button", has_text="Save limits").click()
    await expect(page.locator("#budgets-panel .error")).to_contain_text("rpm")
    await models.fill("claude-*, anthropic/*")
    await row.locator("input[name=rpm]").fill("50")
    await row.locator("button", has_text="Save limits").click()
    await expect(models).to_have_value("claude-*, anthropic/*")
    await expect(row.locator("input[name=rpm]")).to_have_value("50")
    await expect(page.locator("#budgets-panel .error")).to_have_count(0)

    with pytest.raises(openai.PermissionDeniedError) as refused:
        await chat(stack, owner.api_key, model="gpt-4o-mini")
    assert "is not allowed for API key" in str(refused.value)
    async with api(stack, owner.api_key) as account:
        listed = (await account.get("/v1/account/keys")).json()["data"][0]
        assert (listed["allowed_models"], listed["rpm"], listed["tpm"]) == (["claude-*", "anthropic/*"], 50, 0)

    await models.fill("")  # no models: every model again
    # The field reads "" as soon as it is filled: wait for the form's answer, not for the field.
    async with page.expect_response(lambda answer: answer.request.method == "POST" and "/keys/" in answer.url):
        await row.locator("button", has_text="Save limits").click()
    await expect(models).to_have_value("")
    assert (await chat(stack, owner.api_key, model="gpt-4o-mini")).http_response.status_code == 200
    assert not problems(page)


async def test_the_response_cache_switched_on_in_the_dashboard_answers_repeats_until_purged(
    page: Page, owner: Owner, stack: Any
) -> None:
    await visit(page, "/dashboard/cache")
    entries = page.locator(".cache-entries")
    await expect(entries).to_have_text("0")
    await page.fill("input[name=ttl_seconds]", "0")  # refused by the account API's own limits, shown in the form
    await page.click("text=Save settings")
    await expect(page.locator("#cache-panel .error")).to_contain_text("ttl_seconds")
    await page.check("input[name=enabled]")
    await page.fill("input[name=ttl_seconds]", "600")
    await page.click("text=Save settings")
    await expect(page.locator("#cache-panel .saved")).to_contain_text("Saved")

    messages = [{"role": "user", "content": f"cached in the dashboard test {uuid.uuid4().hex}"}]
    assert (await chat(stack, owner.api_key, messages=messages)).headers["x-orqen-cache"] == "miss"
    assert (await chat(stack, owner.api_key, messages=messages)).headers["x-orqen-cache"] == "hit"
    await visit(page, "/dashboard/cache")
    await expect(entries).to_have_text("1")
    await expect(page.locator("input[name=enabled]")).to_be_checked()
    await expect(page.locator("input[name=ttl_seconds]")).to_have_value("600")
    await assert_fits_375(page)
    await screenshot(page, "cache")

    confirmed: list[str] = []
    page.once("dialog", lambda dialog: confirmed.append(dialog.message) or dialog.accept())
    await page.click("text=Purge the cache")
    await expect(page.locator("#cache-panel")).to_contain_text("Purged 1 answers.")
    await expect(entries).to_have_text("0")
    assert confirmed == ["Delete every cached answer? The next requests call their providers."]
    assert (await chat(stack, owner.api_key, messages=messages)).headers["x-orqen-cache"] == "miss"

    await page.uncheck("input[name=enabled]")  # an unchecked box is sent as nothing: off
    await page.click("text=Save settings")
    await expect(page.locator("#cache-panel .saved")).to_contain_text("Saved")
    assert not problems(page)
    async with api(stack, owner.api_key) as account:
        assert (await account.get("/v1/account/cache")).json()["enabled"] is False


async def test_a_provider_saved_in_the_dashboard_is_used_then_deleted(page: Page, owner: Owner, stack: Any) -> None:
    saved_key = "sk-ant-dashboard-saved-4321"
    await visit(page, "/dashboard/providers")
    # Refused by dispatch's own rules, the message shows in the form it came from.
    await page.click("#add-bedrock summary")
    bedrock = page.locator("#add-bedrock form")
    await bedrock.locator("input[name=access_key_id]").fill("AKIAEXAMPLE")
    await bedrock.locator("input[name=region]").fill("us-east-1")
    await bedrock.locator("button[type=submit]").click()
    await expect(page.locator("#add-bedrock .error")).to_contain_text("secret_access_key")
    await expect(page.locator("#add-bedrock input[name=region]")).to_have_value("us-east-1")

    await page.click("#add-anthropic summary")
    await page.fill("#add-anthropic input[name=api_key]", saved_key)
    await page.click("#add-anthropic button[type=submit]")
    row = page.locator("tr[data-provider=anthropic]")
    await expect(row).to_contain_text("…4321")
    assert saved_key not in await page.content()
    await visit(page, "/dashboard/providers")
    await expect(row).to_have_count(1)
    assert saved_key not in await page.content()
    await assert_fits_375(page)
    await page.click("#add-bedrock summary")
    await screenshot(page, "providers")

    # The account's own key now wins over the operator's: the fake Anthropic knows only the operator's.
    with pytest.raises(openai.AuthenticationError) as refused:
        await chat(stack, owner.api_key, "claude-sonnet-4-6")
    assert "anthropic returned 401" in str(refused.value)

    page.once("dialog", lambda dialog: dialog.accept())
    await row.locator("button", has_text="Delete").click()
    await expect(row).to_have_count(0)
    assert not problems(page)
    answered = await chat(stack, owner.api_key, "claude-sonnet-4-6")  # the operator's key again
    assert answered.http_response.status_code == 200


async def add_deployment(page: Page, name: str, weight: str) -> None:
    """Sends the "Add or replace a deployment" form: deployment `name` of BALANCED on the operator's OpenAI
    (the stack's fake OpenAI), calling its gpt-4o-mini."""
    form = page.locator("#balanced-models form[action='/dashboard/providers/deployments']")
    await form.locator("input[name=model]").fill(BALANCED)
    await form.locator("select[name=strategy]").select_option("weighted")
    await form.locator("input[name=name]").fill(name)
    await form.locator("select[name=provider]").select_option("openai")
    await form.locator("input[name=upstream_model]").fill("gpt-4o-mini")
    await form.locator("input[name=weight]").fill(weight)
    await form.locator("button", has_text="Save deployment").click()


async def test_a_model_balanced_in_the_dashboard_answers_through_its_deployments_until_deleted(
    page: Page, owner: Owner, stack: Any
) -> None:
    with pytest.raises(openai.InternalServerError) as refused:  # its provider fails it (see BALANCED)
        await chat(stack, owner.api_key, BALANCED)
    assert refused.value.status_code == 502
    await visit(page, "/dashboard/providers")
    card = page.locator("#balanced-models")
    await expect(card.locator("table.balanced")).to_contain_text("None")

    # Over the account API's maximum weight: its message, in the form, with what was typed.
    await add_deployment(page, "east", "5000")
    await expect(card.locator(".error")).to_contain_text("weight")
    await expect(card.locator(".error")).to_contain_text("1000")
    await expect(card.locator("input[name=weight]")).to_have_value("5000")
    await expect(card.locator("input[name=model]")).to_have_value(BALANCED)
    await expect(card.locator("select[name=provider]")).to_have_value("openai")
    await expect(card.locator("table.balanced")).to_contain_text("None")
    async with api(stack, owner.api_key) as account:
        assert (await account.get("/v1/account/providers/deployments")).json()["data"] == []

    await add_deployment(page, "east", "1")
    await expect(card.locator(".saved")).to_contain_text(f"Saved deployment east of {BALANCED}")
    await add_deployment(page, "west", "3")
    model = card.locator(f"tbody[data-balanced-model='{BALANCED}']")
    await expect(model.locator(".badge")).to_have_text("weighted")
    east, west = (
        model.locator(f"tr[data-deployment='{BALANCED}/east']"),
        model.locator(f"tr[data-deployment='{BALANCED}/west']"),
    )
    await expect(east).to_contain_text("openai")
    await expect(east).to_contain_text("gpt-4o-mini")
    await expect(west.locator("td.num").first).to_have_text("3")
    await expect(west.locator("td.num").nth(1)).to_have_text("unlimited")
    async with api(stack, owner.api_key) as account:
        (saved,) = (await account.get("/v1/account/providers/deployments")).json()["data"]
    assert saved["model"] == BALANCED and saved["strategy"] == "weighted"
    assert [(d["name"], d["provider"], d["model"], d["weight"]) for d in saved["deployments"]] == [
        ("east", "openai", "gpt-4o-mini", 1),
        ("west", "openai", "gpt-4o-mini", 3),
    ]
    await assert_fits_375(page)
    await card.scroll_into_view_if_needed()
    await screenshot(page, "providers-balanced")

    async def answered_by() -> str:
        """Calls the balanced model through the OpenAI SDK, checks the fake OpenAI was asked for the
        deployments' upstream model, and returns the deployment that answered, as the request log says."""
        content = f"balanced in the dashboard {uuid.uuid4().hex}"
        answer = await chat(stack, owner.api_key, BALANCED, messages=[{"role": "user", "content": content}])
        assert answer.http_response.status_code == 200
        received = [r["body"] for r in stack.upstream.requests if content in str(r["body"])]
        assert [body["model"] for body in received] == ["gpt-4o-mini"]
        async with api(stack, owner.api_key) as account:
            entry = await logged(account, answer.headers["x-request-id"])
        assert entry["model_requested"] == BALANCED and entry["provider"] == "openai"
        (attempt,) = entry["attempts"]
        return str(attempt["deployment"])

    assert await answered_by() in ("east", "west")

    confirmed: list[str] = []
    page.once("dialog", lambda dialog: confirmed.append(dialog.message) or dialog.accept())
    await east.locator("button", has_text="Delete").click()
    await expect(east).to_have_count(0)
    await expect(west).to_have_count(1)
    assert confirmed == [f"Delete deployment east of {BALANCED}?"]
    assert await answered_by() == "west"

    page.once("dialog", lambda dialog: confirmed.append(dialog.message) or dialog.accept())
    await model.locator("button", has_text="Delete model").click()
    await expect(model).to_have_count(0)
    await expect(card.locator("table.balanced")).to_contain_text("None")
    assert confirmed[1:] == [f"Stop balancing {BALANCED}? Requests for it go to its provider as before."]
    assert not problems(page)
    with pytest.raises(openai.InternalServerError):  # its own provider again
        await chat(stack, owner.api_key, BALANCED)


async def test_a_model_switched_off_in_the_dashboard_is_skipped_by_routing(
    page: Page, owner: Owner, stack: Any
) -> None:
    chosen = (await chat(stack, owner.api_key, "orqen/capable")).headers["x-orqen-model"]
    await visit(page, "/dashboard/routing")
    row = page.locator(f"tr[data-model='{chosen}']")
    switch = row.locator("input[name=enabled]")
    await expect(switch).to_be_checked()
    await switch.uncheck()
    await expect(row.locator(".badge")).to_have_text("off")
    assert not problems(page)

    again = await chat(stack, owner.api_key, "orqen/capable")
    assert again.http_response.status_code == 200 and again.headers["x-orqen-model"] != chosen
    await visit(page, "/dashboard/routing")
    await expect(page.locator(f"tr[data-model='{chosen}'] input[name=enabled]")).not_to_be_checked()


async def test_preferences_saved_in_the_form_apply_to_the_next_request(page: Page, owner: Owner, stack: Any) -> None:
    await visit(page, "/dashboard/routing")
    form = page.locator("#preferences")
    # Accounting's own rule, shown in the form next to what was typed.
    await form.locator("input[name=k_cap]").fill("1")
    await form.locator("button[type=submit]").click()
    await expect(page.locator("#preferences .error")).to_contain_text("k_cap 1")
    await expect(page.locator("#preferences input[name=k_cap]")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#preferences input[name=k_cap]")).to_have_value("1")

    await page.locator("#preferences input[name=k_cap]").fill("12")
    await page.locator("#preferences input[name=fallback_models]").fill("claude-sonnet-4-6")
    await page.locator("#preferences select[name=mode]").select_option("keyword")
    await page.locator("#preferences button[type=submit]").click()
    await expect(page.locator("#preferences .saved")).to_be_visible()
    assert not problems(page)

    async with api(stack, owner.api_key) as account:
        saved = (await account.get("/v1/account/routing/preferences")).json()
    assert saved == {
        "mode": "keyword",
        "k_floor": 3,
        "k_cap": 12,
        "ab_control_share": 0.05,
        "fallback_models": ["claude-sonnet-4-6"],
    }
    # The next request follows them: its model fails, and the fallback chain answers.
    answered = await chat(stack, owner.api_key, "gpt-fake-500")
    assert answered.headers["x-orqen-model"] == "claude-sonnet-4-6"


async def test_another_accounts_key_and_provider_ids_answer_404(
    page: Page, owner: Owner, new_owner: Any, stack: Any
) -> None:
    bob = await new_owner()
    async with api(stack, bob.api_key) as bobs:
        bob_key = (await bobs.get("/v1/account/keys")).json()["data"][0]["id"]
        saved = await bobs.post("/v1/account/providers", json={"provider": "groq", "api_key": "gsk-bob-0000"})
        bob_provider = saved.json()["id"]
        bob_budget = (await bobs.post("/v1/account/budgets", json={"period": "day", "max_tokens": 10**6})).json()["id"]
        bob_model = {"deployments": [{"name": "a", "provider": "openai", "model": "gpt-4o-mini"}]}
        assert (await bobs.put("/v1/account/providers/deployments/bobs-model", json=bob_model)).status_code == 200
    await visit(page, "/dashboard/keys")
    token = await csrf_token(page)

    confirm = await page.goto(f"/dashboard/keys/{bob_key}/revoke")
    assert confirm is not None and confirm.status == 404
    await expect(page.locator("main h1")).to_have_text("Not found")
    for path in (
        f"/dashboard/keys/{bob_key}/revoke",
        f"/dashboard/providers/{bob_provider}/delete",
        f"/dashboard/budgets/{bob_budget}/delete",
        f"/dashboard/budgets/keys/{bob_key}",
        "/dashboard/keys/not-a-key-id/revoke",
        "/dashboard/providers/deployments/delete-model/bobs-model",
        "/dashboard/providers/deployments/delete-deployment/a/bobs-model",
    ):
        answer = await page.request.post(path, form={"csrf_token": token})
        assert answer.status == 404, (path, answer.status)
        assert "text/html" in answer.headers["content-type"]
    toggled = await page.request.post(
        "/dashboard/routing/models/toggle", form={"csrf_token": token, "model": "no-such-model"}
    )
    assert toggled.status == 404

    async with api(stack, bob.api_key) as bobs:
        assert (await chat(stack, bob.api_key)).http_response.status_code == 200  # Bob's key still works
        assert [p["id"] for p in (await bobs.get("/v1/account/providers")).json()["data"]] == [bob_provider]
        assert [b["id"] for b in (await bobs.get("/v1/account/budgets")).json()["data"]] == [bob_budget]
        balanced = (await bobs.get("/v1/account/providers/deployments")).json()["data"]
        assert [(m["model"], [d["name"] for d in m["deployments"]]) for m in balanced] == [("bobs-model", ["a"])]


async def test_settings_changes_without_the_csrf_token_are_refused(page: Page, owner: Owner, stack: Any) -> None:
    async with api(stack, owner.api_key) as account:
        key_id = (await account.get("/v1/account/keys")).json()["data"][0]["id"]
        before = (await account.get("/v1/account/routing/preferences")).json()
    changes = (
        ("/dashboard/keys", {"name": "forged"}),
        (f"/dashboard/keys/{key_id}/revoke", {}),
        ("/dashboard/routing/preferences", {"k_cap": "7"}),
        ("/dashboard/routing/models/toggle", {"model": "gpt-4o-mini"}),
        ("/dashboard/providers", {"form": "openai", "provider": "openai", "api_key": "sk-forged"}),
        ("/dashboard/budgets", {"period": "day", "max_tokens": "1"}),
        ("/dashboard/cache", {"enabled": "true"}),
        ("/dashboard/cache/purge", {}),
        (f"/dashboard/budgets/keys/{key_id}", {"allowed_models": "claude-*"}),
        ("/dashboard/providers/deployments", {"model": "forged", "name": "a", "provider": "openai"}),
        ("/dashboard/providers/deployments/delete-deployment/a/team-model", {}),
        ("/dashboard/providers/deployments/delete-model/team-model", {}),
    )
    async with api(stack, owner.api_key) as account:
        balanced = {"deployments": [{"name": "a", "provider": "openai"}]}
        assert (await account.put("/v1/account/providers/deployments/team-model", json=balanced)).status_code == 200
    for path, fields in changes:
        for token in ({}, {"csrf_token": "not-the-token"}):
            answer = await page.request.post(path, form={**fields, **token})
            assert answer.status == 403, (path, token, answer.status)

    async with api(stack, owner.api_key) as account:
        keys = (await account.get("/v1/account/keys")).json()["data"]
        assert [k["name"] for k in keys] == ["e2e"] and keys[0]["revoked_at"] is None
        assert keys[0]["allowed_models"] == []
        assert (await account.get("/v1/account/routing/preferences")).json() == before
        assert (await account.get("/v1/account/providers")).json()["data"] == []
        assert (await account.get("/v1/account/budgets")).json()["data"] == []
        assert (await account.get("/v1/account/cache")).json()["enabled"] is False
        balanced_models = (await account.get("/v1/account/providers/deployments")).json()["data"]
        assert [(m["model"], [d["name"] for d in m["deployments"]]) for m in balanced_models] == [("team-model", ["a"])]
        models = (await account.get("/v1/account/routing/models")).json()["data"]
        assert next(m for m in models if m["id"] == "gpt-4o-mini")["enabled"]


async def test_the_settings_forms_work_as_plain_posts_without_htmx(page: Page, owner: Owner, stack: Any) -> None:
    await visit(page, "/dashboard/routing")
    token = await csrf_token(page)
    refused = await page.request.post(
        "/dashboard/routing/preferences", form={"csrf_token": token, "k_floor": "4", "k_cap": "2"}, max_redirects=0
    )
    assert refused.status == 422 and "Invalid k_cap 2" in await refused.text()
    saved = await page.request.post(
        "/dashboard/routing/preferences", form={"csrf_token": token, "k_cap": "9"}, max_redirects=0
    )
    assert saved.status == 303 and saved.headers["location"] == "/dashboard/routing"
    bad_name = await page.request.post("/dashboard/keys", form={"csrf_token": token, "name": "bad\x01name"})
    assert bad_name.status == 422 and "control characters are not allowed" in await bad_name.text()
    created = await page.request.post("/dashboard/keys", form={"csrf_token": token, "name": "<b>plain</b>"})
    body = await created.text()
    assert created.status == 200 and 'id="new-key"' in body
    assert "&lt;b&gt;plain&lt;/b&gt;" in body and "<b>plain</b>" not in body
    async with api(stack, owner.api_key) as account:
        assert (await account.get("/v1/account/routing/preferences")).json()["k_cap"] == 9
        keys = (await account.get("/v1/account/keys")).json()["data"]
    new_id = next(k["id"] for k in keys if k["name"] == "<b>plain</b>")
    confirm = await page.request.get(f"/dashboard/keys/{new_id}/revoke")
    assert confirm.status == 200 and "Revoke key" in await confirm.text()
    revoked = await page.request.post(f"/dashboard/keys/{new_id}/revoke", form={"csrf_token": token}, max_redirects=0)
    assert revoked.status == 303
    gone = await page.request.get(f"/dashboard/keys/{new_id}/revoke")
    assert gone.status == 404  # a revoked key cannot be revoked again

    refused_budget = await page.request.post("/dashboard/budgets", form={"csrf_token": token, "period": "year"})
    assert refused_budget.status == 422 and "period" in await refused_budget.text()
    budget = {"csrf_token": token, "period": "week", "max_spend_usd": "5"}
    saved_budget = await page.request.post("/dashboard/budgets", form=budget, max_redirects=0)
    assert saved_budget.status == 303 and saved_budget.headers["location"] == "/dashboard/budgets"
    cache = {"csrf_token": token, "enabled": "true", "ttl_seconds": "60"}
    saved_cache = await page.request.post("/dashboard/cache", form=cache, max_redirects=0)
    assert saved_cache.status == 303 and saved_cache.headers["location"] == "/dashboard/cache"
    async with api(stack, owner.api_key) as account:
        budgets = (await account.get("/v1/account/budgets")).json()["data"]
        assert [(b["period"], b["max_spend_usd"]) for b in budgets] == [("week", 5.0)]
        assert (await account.get("/v1/account/cache")).json()["ttl_seconds"] == 60
    deleted = await page.request.post(
        f"/dashboard/budgets/{budgets[0]['id']}/delete", form={"csrf_token": token}, max_redirects=0
    )
    assert deleted.status == 303

    # A balanced model whose name holds a "/": the last part of the delete paths.
    deployment = {"csrf_token": token, "model": "team/plain", "name": "a", "provider": "openai", "weight": "5000"}
    refused_deployment = await page.request.post("/dashboard/providers/deployments", form=deployment)
    refusal = await refused_deployment.text()
    assert refused_deployment.status == 422 and "weight" in refusal and 'value="5000"' in refusal
    for name in ("a", "b"):
        added = {**deployment, "name": name, "weight": "2"}
        saved_deployment = await page.request.post("/dashboard/providers/deployments", form=added, max_redirects=0)
        assert saved_deployment.status == 303 and saved_deployment.headers["location"] == "/dashboard/providers"
    async with api(stack, owner.api_key) as account:
        balanced = (await account.get("/v1/account/providers/deployments")).json()["data"]
    assert [(m["model"], [(d["name"], d["weight"]) for d in m["deployments"]]) for m in balanced] == [
        ("team/plain", [("a", 2), ("b", 2)])
    ]
    for path in ("delete-deployment/a/team/plain", "delete-model/team/plain"):
        removed = await page.request.post(
            f"/dashboard/providers/deployments/{path}", form={"csrf_token": token}, max_redirects=0
        )
        assert removed.status == 303, path
    async with api(stack, owner.api_key) as account:
        assert (await account.get("/v1/account/providers/deployments")).json()["data"] == []
