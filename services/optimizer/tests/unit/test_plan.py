import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from orqen_optimizer import word_vectors
from orqen_optimizer.chat_json import ChatJson
from orqen_optimizer.embeddings import ToolIndex
from orqen_optimizer.plan import BUSY_K_FLOOR, CLAIMED_AT_ONCE, Planner
from orqen_optimizer.policy import PASSTHROUGH, RoutingPolicy
from orqen_optimizer.tokens import count_tokens
from orqen_optimizer.tools import tool_facts
from orqen_optimizer.toolset import toolset

from .conftest import recording_runs, tool

plan = Planner(None).plan


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
    # Compression alone saves tokens: the titles are gone.
    assert stats.tool_tokens_in == sum(count_tokens(orjson.dumps(t).decode()) for t in tools)
    assert (
        stats.tool_tokens_in
        > stats.tool_tokens_out
        == sum(count_tokens(orjson.dumps(t).decode()) for t in forwarded["tools"])
        > 0
    )


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


SEMANTIC_ONLY = RoutingPolicy(mode="semantic", ab_control_share=0.0)
STOCK = {"messages": [{"role": "user", "content": "What is Apple's stock trading at right now?"}]}


def test_a_large_toolset_forwards_the_routed_tools_in_their_order_with_a_trace(tools: list[dict[str, Any]]) -> None:
    planner = Planner(ToolIndex(), max_new_tools=100)
    forwarded, stats, trace = planner.plan({**STOCK, "tools": tools}, SEMANTIC_ONLY)
    names = [t["function"]["name"] for t in forwarded["tools"]]
    assert "get_stock_price" in names and len(names) < len(tools)
    assert names == [t["function"]["name"] for t in tools if t["function"]["name"] in names]  # original order
    assert (stats.tools_input, stats.tools_output, stats.routing) == (len(tools), len(names), "semantic")
    assert 0 < stats.tool_tokens_out < stats.tool_tokens_in  # fewer tools, fewer tokens
    assert trace.mode == "semantic" and trace.k == len(names) and trace.k_reason
    assert trace.intent.startswith("What is Apple's stock") and trace.candidates[0].name == "get_stock_price"


def test_ab_control_forwards_every_tool_and_records_the_decision(tools: list[dict[str, Any]]) -> None:
    planner = Planner(ToolIndex(), max_new_tools=100, rng=lambda: 0.0)
    forwarded, stats, trace = planner.plan({**STOCK, "tools": tools}, RoutingPolicy(mode="semantic"))
    assert len(forwarded["tools"]) == stats.tools_output == len(tools)
    assert stats.routing == trace.mode == "semantic_ab_ctrl" and trace.k < len(tools)


def test_many_unseen_tools_pass_through_once_while_they_are_indexed(tools: list[dict[str, Any]]) -> None:
    planner = Planner(ToolIndex(), max_new_tools=2)
    forwarded, stats, trace = planner.plan({**STOCK, "tools": tools}, SEMANTIC_ONLY)
    assert len(forwarded["tools"]) == len(tools) and stats.routing == PASSTHROUGH
    assert trace.k_reason.startswith("indexing 10 of 10 new tool texts")
    planner.close()  # the background indexing finishes
    _, stats, _ = Planner.plan(planner, {**STOCK, "tools": tools}, SEMANTIC_ONLY)
    assert stats.routing == "semantic"


class HeldIndex(ToolIndex):
    """A tool index that records each batch the background hands it, and holds it until released."""

    def __init__(self) -> None:
        super().__init__()
        self.background_batches: list[int] = []
        self.release = threading.Event()

    def add(self, texts: Sequence[str], ids: Sequence[int] | None = None) -> Sequence[int]:
        if threading.current_thread().name.startswith("tool-indexing"):
            self.background_batches.append(len(texts))
            self.release.wait()
        return super().add(texts, ids)


def many_new_tools(count: int, kind: str) -> list[dict[str, Any]]:
    return [tool(f"{kind}_{i}", f"Looks up {kind} record number {i}.", record_id="Which record") for i in range(count)]


def test_one_request_with_20000_new_tools_queues_a_bounded_share_and_others_are_still_planned(
    tools: list[dict[str, Any]],
) -> None:
    index = HeldIndex()
    planner = Planner(index, max_new_tools=100, max_indexed_per_request=256, max_queued=300)
    try:
        forwarded, stats, trace = planner.plan({**STOCK, "tools": many_new_tools(20_000, "ledger")}, SEMANTIC_ONLY)
        assert len(forwarded["tools"]) == 20_000 and stats.routing == PASSTHROUGH  # it still goes through
        assert trace.k_reason.startswith("indexing 256 of 20000 new tool texts")
        # Another such request, while the first batch is still being indexed: only the queue's room.
        _, _, trace = planner.plan({**STOCK, "tools": many_new_tools(1_000, "invoice")}, SEMANTIC_ONLY)
        assert trace.k_reason.startswith("indexing 44 of 1000 new tool texts")
        # Meanwhile an ordinary request is planned and routed.
        forwarded, stats, _ = planner.plan({**STOCK, "tools": tools}, SEMANTIC_ONLY)
        assert stats.routing == "semantic" and "get_stock_price" in [t["function"]["name"] for t in forwarded["tools"]]
        index.release.set()
        for _ in range(600):  # both queued batches get indexed
            if len(index) == 256 + 44 + len(tools):
                break
            time.sleep(0.1)
    finally:
        index.release.set()
        planner.close()
    # Each queued share is embedded a few texts at a time (each few claimed first when there is a shared cache).
    assert index.background_batches == [CLAIMED_AT_ONCE] * 8 + [CLAIMED_AT_ONCE, 12]
    assert len(index) == 256 + 44 + len(tools)


def test_a_malformed_tool_passes_everything_through_with_the_reason(tools: list[dict[str, Any]]) -> None:
    broken = [*tools, {"type": "function", "function": {"description": "no name"}}]
    forwarded, stats, trace = Planner(ToolIndex()).plan({**STOCK, "tools": broken})
    assert len(forwarded["tools"]) == len(broken) and stats.routing == PASSTHROUGH
    assert trace.k_reason == "tool 10 is malformed: forwarded unchanged"


def test_a_small_toolset_is_forwarded_whole(tools: list[dict[str, Any]]) -> None:
    _, stats, trace = Planner(ToolIndex()).plan({**STOCK, "tools": tools[:3]})
    assert stats.routing == trace.mode == "passthrough_small_toolset" and stats.tools_output == 3


def test_the_accounts_passthrough_mode_forwards_every_tool_compressed(tools: list[dict[str, Any]]) -> None:
    forwarded, stats, trace = Planner(ToolIndex()).plan({**STOCK, "tools": tools}, RoutingPolicy(mode="passthrough"))
    assert stats.routing == PASSTHROUGH and stats.tools_output == len(forwarded["tools"]) == len(tools)
    assert trace.k_reason == "the account's routing mode is passthrough"


def test_the_keyword_mode_routes_unseen_tools_at_once_without_embedding(tools: list[dict[str, Any]]) -> None:
    index = ToolIndex()
    planner = Planner(index, max_new_tools=0)
    forwarded, stats, _ = planner.plan({**STOCK, "tools": tools}, RoutingPolicy(mode="keyword", ab_control_share=0))
    assert stats.routing == "keyword" and "get_stock_price" in [t["function"]["name"] for t in forwarded["tools"]]
    assert stats.tools_output < len(tools) and len(index) == 0  # nothing was embedded


def test_the_accounts_k_floor_and_cap_bound_the_tools_forwarded(tools: list[dict[str, Any]]) -> None:
    planner = Planner(ToolIndex(), max_new_tools=100)
    floor = RoutingPolicy(mode="semantic", k_floor=10, ab_control_share=0)
    _, stats, trace = planner.plan({**STOCK, "tools": tools}, floor)
    assert stats.tools_output == 10 and trace.k_reason == "floor 10"  # the reranker keeps 9 of them
    cap = RoutingPolicy(mode="semantic", k_floor=1, k_cap=2, ab_control_share=0)
    _, stats, trace = planner.plan({**STOCK, "tools": tools}, cap)
    assert stats.tools_output == 2 and stats.routing == trace.mode == "limit" and trace.k_reason == "cap 2"


def test_the_accounts_ab_share_decides_the_control_traffic(tools: list[dict[str, Any]]) -> None:
    planner = Planner(ToolIndex(), max_new_tools=100, rng=lambda: 0.5)
    _, stats, _ = planner.plan({**STOCK, "tools": tools}, RoutingPolicy(mode="semantic", ab_control_share=0.6))
    assert stats.routing == "semantic_ab_ctrl"
    _, stats, _ = planner.plan({**STOCK, "tools": tools}, RoutingPolicy(mode="semantic", ab_control_share=0.4))
    assert stats.routing == "semantic"


def test_the_trace_carries_each_step_and_why_a_tool_was_added(tools: list[dict[str, Any]]) -> None:
    ask = "Find a hotel in Lisbon for Friday, then translate the booking text into Portuguese and email it to Ana."
    planner = Planner(ToolIndex(), max_new_tools=100)
    _, _, trace = planner.plan({"messages": [{"role": "user", "content": ask}], "tools": tools}, RoutingPolicy())
    assert [s.text for s in trace.steps] == [
        "Find a hotel in Lisbon for Friday",
        "translate the booking text into Portuguese",
        "email it to Ana.",
    ]
    assert trace.steps[1].tools[0] == "translate_text"
    added = {c.name: c.added_because for c in trace.candidates if c.added_because}
    assert all(reason.startswith("step ") for reason in added.values())


def test_a_plan_alone_over_a_new_tool_list_runs_its_asks_model_ahead_and_decides_as_in_line(
    tools: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ask = "Find a hotel in Lisbon for Friday, then translate the booking text into Portuguese."
    planner = Planner(ToolIndex(), max_new_tools=100, rng=lambda: 1.0)  # no A/B control traffic
    planner.plan({"messages": [{"role": "user", "content": ask}], "tools": tools}, RoutingPolicy())  # indexes them
    recording = recording_runs(monkeypatch)
    # Each order of the tools is a list of its own, new to the planner.
    chats = [{"messages": [{"role": "user", "content": ask}], "tools": tools[i:] + tools[:i]} for i in (1, 2, 3)]
    ahead = planner.plan(chats[0], RoutingPolicy())
    assert recording.threads == ["embedding-ahead"]  # the ask's one run, beside the list's other work
    in_line = planner.plan(chats[0], RoutingPolicy())  # the list is known now: little to overlap
    assert recording.threads[1:] == [threading.current_thread().name]
    assert ahead == in_line
    # A plan while another is under way (its run held on the encoder's thread) runs its model in line.
    recording.held = threading.Event()
    first = threading.Thread(target=planner.plan, args=(chats[1], RoutingPolicy()))
    first.start()
    while recording.threads.count("embedding-ahead") < 2:
        time.sleep(0.01)
    planner.plan(chats[2], RoutingPolicy())
    recording.held.set()
    first.join()
    assert recording.threads[3:] == [threading.current_thread().name]


def test_a_busy_plan_is_ranked_by_keywords_without_the_model_and_says_so(
    tools: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Texts of its own: word vectors are kept per process, and another test may have worked out these.
    box = uuid.uuid4().hex[:8]
    tools = tools + [tool(f"task_{i}", f"Does task number {i} of the toolbox {box}.") for i in range(20)]
    planner = Planner(ToolIndex(), max_new_tools=100, rng=lambda: 1.0)  # no A/B control traffic
    planner.plan({**STOCK, "tools": tools}, RoutingPolicy())  # indexes them
    recording = recording_runs(monkeypatch)
    request = ChatJson.parse(orjson.dumps({**STOCK, "tools": tools}))
    body, stats, trace = planner.plan_json(request, RoutingPolicy(mode="semantic"), busy=True)
    assert recording.threads == []  # the model never ran
    assert stats.routing == trace.mode == "keyword_busy"
    # Its tools were indexed in line, with the first plan: their word vectors are worked out now, for the next.
    assert trace.k_reason == (
        f"the model had no turn in time, ranked by keywords: floor {BUSY_K_FLOOR}; "
        "by BM25 alone while the list's word vectors are worked out"
    )
    assert body is not None
    forwarded = [t["function"]["name"] for t in orjson.loads(body)["tools"]]
    assert "get_stock_price" in forwarded and len(forwarded) == stats.tools_output == BUSY_K_FLOOR
    working = word_vectors.pending(toolset([tool_facts(t) for t in tools]))
    if working is not None:
        working.result()  # the list's word vectors, worked out in the background
    _, stats, trace = planner.plan_json(request, RoutingPolicy(mode="semantic", k_cap=5), busy=True)
    assert stats.tools_output == 5 and stats.routing == "keyword_busy"  # the account's cap still holds
    assert trace.k_reason == "the model had no turn in time, ranked by keywords: cap 5"
    control = Planner(ToolIndex(), max_new_tools=100, rng=lambda: 0.0)  # every plan is control traffic
    _, stats, _ = control.plan_json(request, RoutingPolicy(ab_control_share=0.5), busy=True)
    assert stats.routing == "keyword_busy_ab_ctrl" and stats.tools_output == len(tools)


def test_a_new_list_s_word_vectors_are_worked_out_with_its_embeddings(tools: list[dict[str, Any]]) -> None:
    # Texts no other test has: the word vectors of a list are kept per process.
    tools = tools + many_new_tools(40, "astrolabe")
    planner = Planner(ToolIndex(), max_new_tools=2, rng=lambda: 1.0)
    _, stats, _ = planner.plan({**STOCK, "tools": tools}, RoutingPolicy())
    assert stats.routing == PASSTHROUGH  # indexed in the background
    planner.close()
    request = ChatJson.parse(orjson.dumps({**STOCK, "tools": tools}))
    _, stats, trace = planner.plan_json(request, RoutingPolicy(mode="semantic"), busy=True)
    # Ranked by keywords with the list's word vectors at once, not "by BM25 alone while … worked out".
    assert stats.routing == "keyword_busy"
    assert trace.k_reason == f"the model had no turn in time, ranked by keywords: floor {BUSY_K_FLOOR}"
    texts = [view for t in tools for view in tool_facts(t).views]
    assert word_vectors.list_word_vectors(object(), texts) is not None  # every text known: none left for later


def test_a_busy_plan_of_a_list_without_word_vectors_says_so_whatever_bounds_its_k(
    tools: list[dict[str, Any]],
) -> None:
    tools = tools + many_new_tools(40, "sextant")  # indexed by hand: no word vectors worked out with them
    index = ToolIndex()
    index.add([view for t in tools for view in tool_facts(t).views])
    request = ChatJson.parse(orjson.dumps({**STOCK, "tools": tools}))
    _, stats, trace = Planner(index, rng=lambda: 1.0).plan_json(request, RoutingPolicy(mode="semantic"), busy=True)
    assert stats.routing == "keyword_busy" and stats.tools_output == BUSY_K_FLOOR
    assert trace.k_reason == (
        f"the model had no turn in time, ranked by keywords: floor {BUSY_K_FLOOR}; "
        "by BM25 alone while the list's word vectors are worked out"
    )


def test_a_plan_that_will_not_embed_starts_no_run(tools: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    planner = Planner(ToolIndex(), max_new_tools=100)
    recording = recording_runs(monkeypatch)
    for chat, policy in [
        ({**STOCK, "tools": tools}, RoutingPolicy(mode="keyword")),
        ({**STOCK, "tools": tools}, RoutingPolicy(mode=PASSTHROUGH)),
        ({**STOCK, "tools": tools[:3]}, RoutingPolicy()),  # a small toolset is forwarded whole
    ]:
        planner.plan(chat, policy)
    assert recording.threads == []
