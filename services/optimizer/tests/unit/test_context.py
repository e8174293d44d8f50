"""Long agent conversations shrink in their old tool outputs only; what matters is kept verbatim."""

from __future__ import annotations

from typing import Any

from orqen_optimizer.context import compress_context, tokens_of


def log_lines(n: int, marker_at: int | None = None) -> str:
    lines = [
        f"2026-11-0{1 + i % 9} INFO worker processed batch {i} of the nightly import without errors" for i in range(n)
    ]
    lines[n // 3] += " (retrying https://status.example.com/incidents/77)"
    if marker_at is not None:
        lines[marker_at] = "order ORD-12345 shipped via carrier_dhl, tracking /srv/tracking/ORD-12345.json"
    return "\n".join(lines)


def call(call_id: str, name: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}],
    }


def conversation() -> list[dict[str, Any]]:
    inventory = "\n".join(f"sku-{i:04d} count {i * 3} warehouse_{i % 4}" for i in range(120))
    return [
        {"role": "system", "content": "You are the operations assistant. Never invent order numbers."},
        {"role": "user", "content": "Check last night's import."},
        call("call_1", "read_logs"),
        {"role": "tool", "tool_call_id": "call_1", "content": log_lines(400, marker_at=250)},
        {"role": "assistant", "content": "The import ran without errors."},
        {"role": "user", "content": "And the inventory?"},
        call("call_2", "inventory"),
        {"role": "tool", "tool_call_id": "call_2", "content": inventory},
        {"role": "assistant", "content": "Inventory looks normal."},
        {"role": "user", "content": "Recheck the inventory please."},
        call("call_3", "inventory"),
        {"role": "tool", "tool_call_id": "call_3", "content": inventory},
        {"role": "assistant", "content": "Same as before."},
        {"role": "user", "content": "Was ORD-12345 shipped, and by which carrier?"},
    ]


def test_old_tool_outputs_shrink_and_the_latest_turns_stay_verbatim() -> None:
    messages = conversation()
    result = compress_context(messages)
    out = result.messages
    assert result.changed and result.tokens_out < result.tokens_in * 0.6
    assert result.tokens_in == tokens_of(messages) and result.tokens_out == tokens_of(out)
    # Roles, order, tool call ids and calls are the same: the conversation stays valid.
    assert [(m["role"], m.get("tool_call_id"), m.get("tool_calls")) for m in out] == [
        (m["role"], m.get("tool_call_id"), m.get("tool_calls")) for m in messages
    ]
    assert out[0] == messages[0]  # the system prompt
    assert out[9:] == messages[9:]  # the last two user turns, the latest question included
    shrunk = out[3]["content"]
    assert "order ORD-12345 shipped via carrier_dhl, tracking /srv/tracking/ORD-12345.json" in shrunk
    assert shrunk.startswith(messages[3]["content"].splitlines()[0])  # first lines kept
    assert shrunk.endswith(messages[3]["content"].splitlines()[-1])  # last lines kept
    assert "https://status.example.com/incidents/77" in shrunk  # a URL of a left-out line is listed
    # An older output identical to a later one points to it.
    assert out[7]["content"].startswith("[Orqen: same output as a later call")
    assert out[11] == messages[11]


def test_a_short_conversation_is_left_alone() -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    result = compress_context(messages)
    assert result.messages is messages and not result.changed


def test_a_long_conversation_with_nothing_to_shrink_is_returned_as_it_is() -> None:
    messages = [{"role": "user", "content": "word " * 3000}, {"role": "assistant", "content": "ok"}]
    result = compress_context(messages)
    assert result.messages is messages and result.tokens_in == result.tokens_out > 2000
