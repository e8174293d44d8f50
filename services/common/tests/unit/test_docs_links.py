"""Every relative link in the README and docs/ points at a file that exists, and at a heading it has."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# [text](target): the target up to the closing parenthesis, without a title.
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.MULTILINE)


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the document's headings: lower case, punctuation dropped, spaces as dashes."""
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(_FENCE.sub("", markdown)):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(document: Path) -> list[str]:
    """Links outside code blocks that stay in the repository (no scheme, no mail)."""
    text = _FENCE.sub("", document.read_text())
    return [target for target in _LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def test_the_documents_exist() -> None:
    assert {p.name for p in DOCUMENTS} >= {
        "README.md",
        "api.md",
        "routing.md",
        "performance.md",
        "configuration.md",
        "operations.md",
    }


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(document: Path) -> None:
    broken = []
    for target in relative_links(document):
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            broken.append(f"{target}: no heading with that anchor")
    assert broken == []
