"""orqen/auto's complexity model: its BFCL asks, its fit, and its measure (`make bench-optimizer`).

    python services/optimizer/bench/auto.py bfcl   # writes orqen_dispatch/labelled_asks/bfcl.jsonl
    python services/optimizer/bench/auto.py fit    # writes orqen_dispatch/complexity_model.json
    python services/optimizer/bench/auto.py        # the report (bench/routing.py prints it too)

The labelled asks (orqen_dispatch/labelled_asks, README.md there) are split by a hash of their
id; the model is fitted on the training split only (logistic regression, L2, Newton steps) and
reported on the test split: accuracy, the confusion of label against orqen/auto's choice, and
the cost of the models orqen/auto picks against always picking orqen/capable, through the real
ModelChooser over a typical listing (orqen_dispatch.typical_listing) priced by the price
library. Cost assumes OUTPUT_TOKENS of output per request and
counts input as the ask, its context and its tool definitions at CHARS_PER_TOKEN.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from orqen_common.formats.openai import ChatRequest, decode_request
from orqen_common.prices import Prices, library_version
from orqen_dispatch import labelled_asks
from orqen_dispatch.complexity import FEATURE_NAMES, ComplexityModel, tool_lead
from orqen_dispatch.labelled_asks import LabelledAsk
from orqen_dispatch.model_routing import ModelChooser, RequestProfile, ask_of, classify
from orqen_dispatch.typical_listing import typical_profiles
from orqen_optimizer import bfcl
from orqen_optimizer.embeddings import ToolIndex
from orqen_optimizer.plan import Planner
from orqen_optimizer.tools import tool_views

OUTPUT_TOKENS = 500
CHARS_PER_TOKEN = 4
L2 = 1.0
SEED = 19
POOL = 50  # each BFCL ask comes with its own tools among this many, as an agent's would
# Connected providers the cost is measured for: an account with every listed provider, and one each.
ACCOUNTS = ({"openai", "anthropic", "bedrock", "groq"}, {"openai"}, {"anthropic"})
DISPATCH = Path(str(resources.files("orqen_dispatch")))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", nargs="?", choices=("bfcl", "fit", "report"), default="report")
    args = parser.parse_args(argv)
    if args.step == "bfcl":
        write_bfcl_asks(DISPATCH / "labelled_asks" / "bfcl.jsonl")
    elif args.step == "fit":
        fit(DISPATCH / "complexity_model.json")
    else:
        report()


# The BFCL asks.


def write_bfcl_asks(path: Path) -> None:
    """Every BFCL single-turn question whose answer makes two calls or more (complex), and as many
    of those making one call (simple), sampled; each routed by the optimizer among POOL tools."""
    rows: list[dict[str, Any]] = []
    data = Path(str(resources.files("bfcl_eval"))) / "data"
    catalogue: dict[str, dict[str, Any]] = {}
    for category in bfcl.SINGLE_TURN:
        answers = _jsonl(data / "possible_answer" / f"{bfcl.VERSION}_{category}.json")
        calls = {a["id"]: len(a["ground_truth"]) for a in answers}
        for case in bfcl.cases(category):
            catalogue.update((json.dumps(t, sort_keys=True), t) for t in case.tools)
            if calls.get(case.id):
                n = calls[case.id]
                label = "simple" if n == 1 else "complex"
                rows.append({"id": case.id, "category": category, "calls": n, "label": label, "case": case})
    rng = random.Random(SEED)
    complex_ = [r for r in rows if r["label"] == "complex"]
    simple = rng.sample([r for r in rows if r["label"] == "simple"], len(complex_))
    chosen = sorted(simple + complex_, key=lambda r: (bfcl.SINGLE_TURN.index(r["category"]), r["id"]))

    index = ToolIndex()
    index.add([v for tool in catalogue.values() for v in tool_views(tool)])
    planner = Planner(index)
    keys = sorted(catalogue)
    with path.open("w", encoding="utf-8") as out:
        for row in chosen:
            case = row.pop("case")
            own = {json.dumps(t, sort_keys=True) for t in case.tools}
            others = rng.sample([k for k in keys if k not in own], POOL - len(own))
            pool = [*case.tools, *(catalogue[k] for k in others)]
            _, _, trace = planner.plan({"messages": [{"role": "user", "content": case.question}], "tools": pool})
            best = sorted((c.score for c in trace.candidates), reverse=True)[:2]
            row |= {
                "question": case.question,
                "context_chars": 0,
                "tools": trace.k,
                "tool_chars": len(json.dumps(case.tools)),
                "ranking": best,
            }
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    planner.close()
    print(f"wrote {len(chosen)} BFCL asks ({len(simple)} simple, {len(complex_)} complex) to {path}")


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# The fit.


def profile(ask: LabelledAsk) -> RequestProfile:
    return RequestProfile.of(request(ask), ask.routing())


def request(ask: LabelledAsk) -> ChatRequest:
    return decode_request(msgspec.json.encode(ask.body()))


def fit(path: Path) -> None:
    """Fit the model on the training split and write its coefficients, dated, with the training set."""
    train = [a for a in labelled_asks.load() if a.split == "train"]
    x = np.array([ask_of(profile(a)).model_inputs() for a in train])
    y = np.array([a.label == "complex" for a in train], dtype=float)
    # Each source weighs the same in the fit, so the BFCL asks do not drown the hand-written ones.
    sources = Counter(_source(a) for a in train)
    weight = np.array([len(train) / (len(sources) * sources[_source(a)]) for a in train])
    means, scales = x.mean(axis=0), x.std(axis=0)
    scales[scales == 0] = 1.0  # a feature constant in training keeps weight 0 under L2
    z = np.hstack([np.ones((len(x), 1)), (x - means) / scales])
    w = np.zeros(z.shape[1])
    penalty = np.diag([0.0] + [L2] * (z.shape[1] - 1))
    for _ in range(50):  # Newton's method: a handful of steps converge
        p = 1 / (1 + np.exp(-z @ w))
        gradient = z.T @ (weight * (p - y)) + penalty @ w
        hessian = z.T @ (z * (weight * p * (1 - p))[:, None]) + penalty
        w -= np.linalg.solve(hessian, gradient)
    labels = Counter(a.label for a in train)
    model = {
        "fitted": datetime.now(UTC).date().isoformat(),
        "training_set": (
            f"orqen_dispatch/labelled_asks, train split: {len(train)} asks "
            f"({sources['hand']} hand-labelled, {sources['bfcl']} BFCL_v4; "
            f"{labels['simple']} simple, {labels['complex']} complex)"
        ),
        "method": (
            f"logistic regression on standardised inputs, L2 {L2} (intercept unpenalised), "
            "each source weighing the same, Newton's method"
        ),
        "features": list(FEATURE_NAMES),
        "intercept": round(float(w[0]), 6),
        "weights": dict(zip(FEATURE_NAMES, (round(float(v), 6) for v in w[1:]), strict=True)),
        "means": dict(zip(FEATURE_NAMES, (round(float(v), 6) for v in means), strict=True)),
        "scales": dict(zip(FEATURE_NAMES, (round(float(v), 6) for v in scales), strict=True)),
    }
    path.write_text(json.dumps(model, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}: {model['training_set']}")
    ComplexityModel.from_json(path.read_text())  # fails here, not in dispatch, if it does not load


# The report.


def report() -> None:
    """Test accuracy, confusion and cost saved of orqen/auto on the labelled asks."""
    asks = labelled_asks.load()
    test = [a for a in asks if a.split == "test"]
    train = [a for a in asks if a.split == "train"]
    print(f"orqen/auto complexity model: {len(asks)} labelled asks, {len(train)} train / {len(test)} test")
    for name, split in (("train", train), ("test", test)):
        print(f"  {name:5} accuracy {_accuracy(split):.1%}", end="")
        for source in ("hand", "bfcl"):
            part = [a for a in split if _source(a) == source]
            print(f"   {source} {_accuracy(part):.1%} of {len(part)}", end="")
        print()
    kinds = Counter((a.label, classify(profile(a)).kind) for a in test)
    print("  test confusion (label -> kind):  simple   standard  complex")
    for label in ("simple", "complex"):
        print(f"    {label:8}{'':24}" + "".join(f"{kinds[label, k]:>9}" for k in ("simple", "standard", "complex")))
    baseline = sum(a.label == "complex" for a in test) / len(test)
    replaced = sum(_replaced_rule(a) == (a.label == "complex") for a in test) / len(test)
    print(f"  always complex (orqen/capable) is right on {baseline:.1%} of the test asks")
    print(f"  the rule this model replaced (regular expressions, length, tools) on {replaced:.1%}")

    prices = Prices()
    listing = typical_profiles(prices)
    provider_of = {m.model: m.provider for m in listing}
    chooser = ModelChooser()
    at = datetime.now(UTC)
    print(
        f"  cost on the test asks, {OUTPUT_TOKENS} output tokens each, prices of genai-prices {library_version()}; "
        "saved against orqen/capable by orqen/auto, and by a perfect classifier (simple asks to orqen/fast):"
    )
    for connected in ACCOUNTS:
        models = [m for m in listing if m.provider in connected]
        cost: defaultdict[str, float] = defaultdict(float)
        for ask in test:
            tokens = (ask.context_chars + len(ask.ask) + ask.tool_chars) // CHARS_PER_TOKEN
            for rule in ("orqen/auto", "orqen/capable", "orqen/fast"):
                [first, *_] = chooser.choose(rule, request(ask), models, (), {}, ask.routing())
                provider = provider_of[first.model]
                priced = prices.price(provider, first.model.removeprefix(f"{provider}/"), _Usage(tokens), at)
                spent = float(priced.total) if priced else 0.0
                cost[rule] += spent
                if (rule == "orqen/fast") == (ask.label == "simple") and rule != "orqen/auto":
                    cost["perfect"] += spent
        print(
            f"    {'+'.join(sorted(connected)):31} orqen/auto ${cost['orqen/auto']:.4f} vs orqen/capable "
            f"${cost['orqen/capable']:.4f}: {1 - cost['orqen/auto'] / cost['orqen/capable']:.1%} saved "
            f"(perfect: {1 - cost['perfect'] / cost['orqen/capable']:.1%})"
        )


class _Usage:
    """`tokens` of uncached input and OUTPUT_TOKENS of output."""

    def __init__(self, tokens: int) -> None:
        self.input_tokens, self.output_tokens = tokens, OUTPUT_TOKENS
        self.cached_input_tokens = self.cache_write_input_tokens = 0


_REPLACED_CUES = re.compile(r"\b(step[- ]by[- ]step|prove|proof|analy[sz]\w*|debug\w*|plan|planning)\b", re.IGNORECASE)


def _replaced_rule(ask: LabelledAsk) -> bool:
    """Whether orqen/auto's classifier before the complexity model called the ask complex (for comparison)."""
    if ask.context_chars + len(ask.ask) >= 32_000 or _REPLACED_CUES.search(ask.ask):
        return True
    return ask.tools > 0 and tool_lead(ask.routing()) < 0.25  # tools, unless one tool was far ahead


def _source(ask: LabelledAsk) -> str:
    return "hand" if ask.source == "hand" else "bfcl"


def _accuracy(asks: Sequence[LabelledAsk]) -> float:
    """Share of asks whose kind matches the label: complex for complex, simple or standard for simple."""
    right = sum((classify(profile(a)).kind == "complex") == (a.label == "complex") for a in asks)
    return right / len(asks) if asks else 0.0


if __name__ == "__main__":
    main()
