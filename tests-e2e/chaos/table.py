"""The table `make chaos` and `make soak` print and the README shows: one row per fault."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """What one fault did, as a client and the records saw it."""

    fault: str
    # What a client saw while the fault lasted, e.g. "503 in the SDK shape for 1.2 s, no hang".
    client_saw: str
    # Requests answered 200 that are missing from (or counted twice in) the records: must be 0.
    records_lost: int
    # Seconds from the fault's end (or the kill) until requests succeed again; None when none failed.
    recovery_seconds: float | None


def format_table(rows: list[Row]) -> str:
    """A Markdown table, ready for the README."""
    lines = [
        "| Fault | What a client saw | Records lost | Time to recover |",
        "|---|---|---|---|",
    ]
    for row in rows:
        recovery = "—" if row.recovery_seconds is None else f"{row.recovery_seconds:.1f} s"
        lines.append(f"| {row.fault} | {row.client_saw} | {row.records_lost} | {recovery} |")
    return "\n".join(lines)
