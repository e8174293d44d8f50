"""orqen/auto's BFCL asks (dispatch's labelled_asks/bfcl.jsonl) carry the labels BFCL's own answers give them."""

import json
from collections import Counter
from importlib import resources
from pathlib import Path

from orqen_optimizer import bfcl

LABELLED = Path(__file__).parents[3] / "dispatch" / "orqen_dispatch" / "labelled_asks" / "bfcl.jsonl"


def test_each_bfcl_ask_is_labelled_by_the_number_of_calls_of_its_expected_answer() -> None:
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines()]
    data = resources.files("bfcl_eval") / "data" / "possible_answer"
    calls: dict[str, int] = {}
    questions: dict[str, str] = {}
    for category in {r["category"] for r in rows}:
        for line in (data / f"{bfcl.VERSION}_{category}.json").read_text(encoding="utf-8").splitlines():
            if line.strip():
                answer = json.loads(line)
                calls[answer["id"]] = len(answer["ground_truth"])
        questions |= {c.id: c.question for c in bfcl.cases(category)}
    for row in rows:
        assert row["calls"] == calls[row["id"]] and row["question"] == questions[row["id"]]
        assert row["label"] == ("simple" if row["calls"] == 1 else "complex")
    labels = Counter(r["label"] for r in rows)
    assert labels["simple"] == labels["complex"]  # every two-call question, as many one-call ones
    assert labels["complex"] == sum(n >= 2 for n in calls.values())
