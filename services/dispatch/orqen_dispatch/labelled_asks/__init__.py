"""The labelled asks orqen/auto's complexity model is fitted and tested on (see README.md here).

Two sources: hand.tsv, asks written by hand for Orqen and labelled by a stated rule, and
bfcl.jsonl, questions of the Berkeley Function Calling Leaderboard labelled by how many calls
their expected answer makes. Each ask is in the training or the test split by a hash of its id,
so the split never moves when asks are added.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from orqen.v1 import optimizer_pb2

Label = Literal["simple", "complex"]
Split = Literal["train", "test"]
TEST_SHARE_IN_TENTHS = 3
# A hand-written ask with context follows one earlier exchange (a user message and an answer).
_TURNS_WITH_CONTEXT = 2


@dataclass(frozen=True, slots=True)
class LabelledAsk:
    """One ask, its label and where the label came from, and what a request carrying it holds."""

    id: str
    source: str  # "hand" or the BFCL category
    label: Label
    why: str  # where the label came from
    ask: str
    context_chars: int  # characters of the conversation before the ask (system prompt, history, documents)
    turns: int
    tools: int  # tools forwarded with it
    tool_chars: int  # characters of the tool definitions the caller sent with it
    ranking: tuple[float, ...] = ()  # the optimizer's two best tool scores, when it ranked the tools

    @property
    def split(self) -> Split:
        return "test" if zlib.crc32(self.id.encode()) % 10 < TEST_SHARE_IN_TENTHS else "train"

    def routing(self) -> optimizer_pb2.RoutingTrace | None:
        """The optimizer's ranking of the tools as dispatch receives it, if it made one."""
        if not self.ranking:
            return None
        return optimizer_pb2.RoutingTrace(
            candidates=[optimizer_pb2.ToolCandidate(name=f"tool_{i}", score=s) for i, s in enumerate(self.ranking)]
        )

    def body(self) -> dict[str, Any]:
        """A canonical chat request carrying this ask: the context as earlier turns, placeholder tools."""
        earlier: list[dict[str, str]] = []
        if self.turns:
            half = self.context_chars // 2
            earlier = [
                {"role": "user", "content": "x" * half},
                {"role": "assistant", "content": "x" * (self.context_chars - half)},
            ]
        tools = [{"type": "function", "function": {"name": f"tool_{i}", "parameters": {}}} for i in range(self.tools)]
        return {"model": "orqen/auto", "messages": [*earlier, {"role": "user", "content": self.ask}]} | (
            {"tools": tools} if tools else {}
        )


def load() -> list[LabelledAsk]:
    """Every labelled ask, the hand-written ones first."""
    folder = resources.files(__name__)
    asks = []
    for line in folder.joinpath("hand.tsv").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        label, context, text = line.split("\t")
        ask = text.replace("\\n", "\n")
        asks.append(
            LabelledAsk(
                id=f"hand:{zlib.crc32(ask.encode()):08x}",
                source="hand",
                label=_label(label),
                why="hand-labelled by the rule in README.md",
                ask=ask,
                context_chars=int(context),
                turns=_TURNS_WITH_CONTEXT if int(context) else 0,
                tools=0,
                tool_chars=0,
            )
        )
    for line in folder.joinpath("bfcl.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        asks.append(
            LabelledAsk(
                id=f"bfcl:{row['id']}",
                source=row["category"],
                label=_label(row["label"]),
                why=f"BFCL_v4 {row['category']}: the expected answer makes {row['calls']} call(s)",
                ask=row["question"],
                context_chars=row["context_chars"],
                turns=0,
                tools=row["tools"],
                tool_chars=row["tool_chars"],
                ranking=tuple(row["ranking"]),
            )
        )
    return asks


def _label(text: str) -> Label:
    if text not in ("simple", "complex"):
        raise ValueError(f"unknown label {text!r}")
    return "simple" if text == "simple" else "complex"
