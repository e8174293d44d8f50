"""The Requests, Sessions and Overview pages' value shaping: every recorded field shown, the routing trace
drawn as the router decided, the x-orqen-* headers as the caller got them, session ids in URLs."""

from __future__ import annotations

import re
from urllib.parse import unquote

import jinja2
from google.protobuf.timestamp_pb2 import Timestamp

from orqen.v1 import accounting_pb2, optimizer_pb2, usage_pb2
from orqen_edge.account.responses import plain
from orqen_edge.dashboard.activity import TEMPLATE_HELPERS, log_url, session_url, sessions_url, shown
from orqen_edge.dashboard.pages.overview import _charts
from orqen_edge.dashboard.pages.requests import FIELD_GROUPS, SECTIONS, logged_headers, record_fields, trace_view
from orqen_edge.dashboard.pages.sessions import timeline
from orqen_edge.dashboard.web import FILTERS, TEMPLATES_DIR
from orqen_edge.ingress.pipeline import orqen_headers


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _record(**fields: object) -> dict[str, object]:
    return plain(accounting_pb2.RequestRecord(**fields))  # type: ignore[arg-type]


def test_every_field_of_a_request_record_has_a_place_on_its_page() -> None:
    grouped = [name for _, names in FIELD_GROUPS for name in names]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) | set(SECTIONS) == {f.name for f in accounting_pb2.RequestRecord.DESCRIPTOR.fields}
    shown_names = [name for _, rows in record_fields(_record(request_id="req_1")) for name, _, _ in rows]
    assert shown_names == grouped


def test_values_are_printed_with_their_units_and_nothing_recorded_is_a_dash() -> None:
    assert shown("cost_usd", 0.000123) == "$0.000123"
    assert (shown("cost_usd", 1234.5678), shown("savings_usd", 0.0)) == ("$1,234.57", "$0")
    assert shown("latency_ms", 1234.56) == "1,234.6 ms"
    assert shown("input_tokens", 12000) == "12,000"
    assert shown("status", 200) == "200"
    assert shown("created_at", "2026-12-02T14:03:04.567890Z") == "2026-12-02 14:03:04 UTC"
    assert shown("stream", False) == "no"
    assert shown("tools_called", ["a", "b"]) == "a, b"
    assert shown("error", "") == shown("trace", None) == shown("tools_called", []) == "—"


def test_a_request_whose_price_is_unknown_shows_so_in_json_and_on_its_page_never_zero() -> None:
    unknown = _record(request_id="req_1", input_tokens=1000, price_unknown=True)
    assert (unknown["cost_usd"], unknown["savings_usd"], unknown["price_unknown"]) == (None, None, True)
    money = dict(record_fields(unknown))["Money"]
    assert [(name, value) for name, _, value in money] == [
        ("cost_usd", "price unknown"),
        ("savings_usd", "price unknown"),
        ("price_unknown", "yes"),
        ("budget_warning", "—"),
        ("cache", "—"),
        ("cache_saved_usd", "$0"),
    ]
    priced = _record(request_id="req_2", cost_usd=0.0, savings_usd=0.5)
    assert (priced["cost_usd"], priced["savings_usd"], priced["price_unknown"]) == (0.0, 0.5, False)
    assert shown("cost_usd", priced["cost_usd"]) == "$0"


def test_the_trace_ranks_candidates_marks_the_first_k_forwarded_and_the_called_ones() -> None:
    trace = optimizer_pb2.RoutingTrace(
        intent="weather in Lisbon",
        mode="semantic",
        k=2,
        k_reason="margin",
        candidates=[
            optimizer_pb2.ToolCandidate(name="get_weather", score=0.9),
            optimizer_pb2.ToolCandidate(name="get_news", score=0.5),
            optimizer_pb2.ToolCandidate(name="send_email", score=0.1),
        ],
    )
    view = trace_view(plain(trace), ["get_weather", "book_hotel"])
    assert view is not None
    assert [(r["rank"], r["name"], r["forwarded"], r["called"]) for r in view["rows"]] == [
        (1, "get_weather", True, True),
        (2, "get_news", True, False),
        (3, "send_email", False, False),
    ]
    assert view["unranked_calls"] == ["book_hotel"]
    assert view["chart"]["labels"] == ["1. get_weather", "2. get_news", "3. send_email"]
    assert view["chart"]["datasets"][0]["data"] == [0.9, 0.5, 0.1]
    assert view["chart"]["options"]["indexAxis"] == "y"
    colours = view["chart"]["datasets"][0]["backgroundColor"]
    assert colours[0] != colours[1] != colours[2]


def test_a_learned_tool_is_forwarded_and_the_tool_that_made_way_for_it_is_not() -> None:
    trace = optimizer_pb2.RoutingTrace(
        mode="semantic",
        k=2,
        candidates=[optimizer_pb2.ToolCandidate(name=n, score=1 - i / 10) for i, n in enumerate("abc")],
        learned=[optimizer_pb2.LearnedTool(name="c", reason="follows a (0.80)", score=0.8)],
        displaced=["b"],
    )
    view = trace_view(plain(trace), [])
    assert view is not None
    assert [(r["name"], r["forwarded"], r["why"]) for r in view["rows"]] == [
        ("a", True, ""),
        ("b", False, "made way for a learned tool"),
        ("c", True, "follows a (0.80)"),
    ]


def test_a_tool_a_stage_added_says_why() -> None:
    trace = optimizer_pb2.RoutingTrace(
        mode="semantic",
        k=2,
        candidates=[
            optimizer_pb2.ToolCandidate(name="grep", score=0.8),
            optimizer_pb2.ToolCandidate(name="cd", score=0.1, added_because="family fs is in play"),
            optimizer_pb2.ToolCandidate(name="find", score=0.7),
        ],
        steps=[optimizer_pb2.RoutingStep(text="search with grep", tools=["grep"])],
        bridged_words=["file"],
    )
    view = trace_view(plain(trace), [])
    assert view is not None
    assert [(r["name"], r["forwarded"], r["why"]) for r in view["rows"]] == [
        ("grep", True, ""),
        ("cd", True, "family fs is in play"),
        ("find", False, ""),
    ]
    assert view["steps"] == [{"text": "search with grep", "tools": ["grep"]}] and view["bridged_words"] == ["file"]


def test_on_ab_control_traffic_every_candidate_was_forwarded() -> None:
    trace = optimizer_pb2.RoutingTrace(
        mode="semantic_ab_ctrl", k=1, candidates=[optimizer_pb2.ToolCandidate(name=n, score=0.5) for n in "abc"]
    )
    view = trace_view(plain(trace), [])
    assert view is not None and view["forwarded_all"]
    assert all(r["forwarded"] for r in view["rows"])
    assert trace_view(None, []) is None


def test_the_logged_headers_are_those_the_pipeline_sends_for_the_same_plan() -> None:
    plan = {"tools_input": 12, "tools_output": 3, "routing": "semantic", "ctx_tokens_in": 900, "ctx_tokens_out": 300}
    record = _record(model_used="gpt-4o-mini", **plan)
    stats = optimizer_pb2.PlanStats(context_compressed=True, **plan)  # type: ignore[arg-type]
    assert logged_headers(record) == orqen_headers("gpt-4o-mini", stats)
    assert logged_headers(record)["x-orqen-prune-ratio"] == "3/12"
    assert logged_headers(record)["x-orqen-ctx-tokens-saved"] == "600"
    assert "x-orqen-ctx-tokens-in" not in logged_headers(_record(model_used="m", tools_input=2, tools_output=2))


def test_urls_keep_filters_and_any_session_id_intact() -> None:
    assert log_url({"model": "gpt-4o", "status": "", "session_id": "a b&c"}) == (
        "/dashboard/requests?model=gpt-4o&session_id=a+b%26c"
    )
    assert log_url({}, cursor="abc") == "/dashboard/requests?cursor=abc"
    hostile = "<script>alert(1)</script>?x=1#y"
    url = session_url(hostile)
    assert url.startswith("/dashboard/sessions/") and "/" not in url.removeprefix("/dashboard/sessions/")
    assert unquote(url.removeprefix("/dashboard/sessions/")) == hostile
    assert session_url("s1", limit="2", cursor="") == "/dashboard/sessions/s1?limit=2"
    assert sessions_url(limit="", cursor="c 1") == "/dashboard/sessions?cursor=c+1"


def test_a_timeline_runs_oldest_first_with_the_time_since_the_first_request() -> None:
    newest_first = [
        {"request_id": "c", "created_at": "2026-12-02T14:05:10Z"},
        {"request_id": "b", "created_at": "2026-12-02T14:00:04.500000Z"},
        {"request_id": "a", "created_at": "2026-12-02T14:00:00Z"},
    ]
    assert [(s["request_id"], s["offset"]) for s in timeline(newest_first)] == [
        ("a", "+0.0s"),
        ("b", "+4.5s"),
        ("c", "+5m 10s"),
    ]
    assert timeline([]) == []


def test_the_overview_draws_no_zero_cost_bar_for_a_model_without_a_known_price() -> None:
    by_model = usage_pb2.SavingsBreakdown(
        models=[
            usage_pb2.ModelSavings(model="gpt-4o-mini", requests=3, cost_usd=0.25),
            usage_pb2.ModelSavings(model="local/mine", requests=2, unpriced_requests=2),
            usage_pb2.ModelSavings(model="gpt-4o", requests=4, unpriced_requests=1, cost_usd=0.5),
        ]
    )
    models = _charts(usage_pb2.UsageDaily(), usage_pb2.AnalyticsDaily(), by_model)["models"]
    assert models["labels"] == ["gpt-4o (1 price unknown)", "gpt-4o-mini", "local/mine (2 price unknown)"]
    assert models["datasets"][0]["data"] == [0.5, 0.25, None]


def test_the_request_log_table_says_price_unknown_where_a_cost_would_be() -> None:
    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True)
    templates.filters.update(FILTERS)
    rows = [
        _record(request_id="req_1", status=200, created_at=_now(), input_tokens=49, price_unknown=True),
        _record(request_id="req_2", status=200, created_at=_now(), cost_usd=0.000123),
    ]
    html = templates.get_template("_requests_table.html").render(
        log={"data": rows}, target="log", first_page=False, problem=None, first_url="/", next_url="", **TEMPLATE_HELPERS
    )
    cells = re.findall(r'<td class="num">([^<]*)</td>', html)
    assert "price unknown" in cells and "$0.000123" in cells and "$0" not in cells
