from orqen_optimizer.plan import PASSTHROUGH, plan


def test_passthrough_plan_forwards_everything_and_counts_tools() -> None:
    chat = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": f"t{i}"}} for i in range(3)],
    }
    forwarded, stats, trace = plan(chat)
    assert forwarded is chat
    assert (stats.tools_input, stats.tools_output, stats.routing) == (3, 3, PASSTHROUGH)
    assert trace.mode == PASSTHROUGH and trace.k == 3
