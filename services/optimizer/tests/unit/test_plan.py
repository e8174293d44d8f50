from orqen_optimizer.plan import PASSTHROUGH, plan


def test_every_tool_is_forwarded_with_its_schema_compressed_and_counted() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": f"t{i}",
                "description": "Does a thing.",
                "parameters": {"type": "object", "title": "Args", "properties": {"q": {"type": "string"}}},
            },
        }
        for i in range(3)
    ]
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools}
    forwarded, stats, trace = plan(chat)
    assert [t["function"]["name"] for t in forwarded["tools"]] == ["t0", "t1", "t2"]
    assert all("title" not in t["function"]["parameters"] for t in forwarded["tools"])
    assert chat["tools"] is tools and "title" in tools[0]["function"]["parameters"]  # the input is not changed
    assert (stats.tools_input, stats.tools_output, stats.routing) == (3, 3, PASSTHROUGH)
    assert trace.mode == PASSTHROUGH and trace.k == 3


def test_a_request_without_tools_is_forwarded_as_it_is() -> None:
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    forwarded, stats, _ = plan(chat)
    assert forwarded is chat and stats.tools_input == 0


def test_a_long_conversation_is_compressed_and_counted() -> None:
    output = "\n".join(f"line {i}: value_{i} ok" for i in range(600))
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                               "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": output},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "third"},
    ]  # fmt: skip
    forwarded, stats, _ = plan({"model": "m", "messages": messages})
    assert stats.context_compressed and stats.ctx_tokens_out < stats.ctx_tokens_in
    assert len(forwarded["messages"][2]["content"]) < len(output) and forwarded["messages"][5] == messages[5]
