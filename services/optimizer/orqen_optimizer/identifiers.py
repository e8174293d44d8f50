"""Lexical bridges: tool identifiers as words, and the short forms that differ from the ask's words.

Tool names are identifiers (`displayCarStatus`, `get-weread-rank`, `mkdir`, `HTTPServer_list`)
while asks are prose. Three bridges, all found in text already at hand, never in a dictionary:
- `identifier_words`: camelCase, snake_case, kebab-case, dotted and digit boundaries become words.
- `aliases`: a short name word stands for words of the tool's own text: an acronym of nearby
  words ("du" in a text about "disk usage", "cd": "change the current directory"), a prefix
  ("dir": "directory"), a contraction keeping the word's first letter and some of its letters in
  order ("mv": "move", "ls": "list"), or two of these run together ("mkdir": "make" +
  "directory"). They are added to the tool's views, so BM25 and the embeddings see them.
- `bridged_names`: the other way round, a name word made of the ask's words' prefixes run
  together ("weread" for "WeChat Reading") or of their initials; the ask then carries that word.

One more bridge is a fixed vocabulary, the words file tools are named by: `path_words`. An ask
that says where a file goes ("save the report in /root/markdown/bitcoin.md", "generate a report
at /root/markdown/daily.md") names neither "file" nor "write", and its other steps outweigh that
clause in the embedding, so an agent lost the tool it needed to finish (`write_file` was the most
missed tool of LiveMCPBench's training tasks).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence

_PARTS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_VOWELS = frozenset("aeiou")
_WHOLE_WORDS = re.compile(r"[A-Za-z]+")
MIN_RUN_TOGETHER = 4  # shorter name words are too easily made of anything's prefixes
MAX_ALIASES = 8


def identifier_words(identifier: str) -> list[str]:
    """The words of an identifier, lower-case: `getHTTPServer_v2-list` -> get, http, server, v, 2, list."""
    return [part.lower() for part in _PARTS.findall(identifier)]


def aliases(name: str, text_words: Sequence[str]) -> list[str]:
    """Words of the tool's own text (`text_words`, in order) that its name's short words stand for."""
    vocabulary = set(text_words)
    found: list[str] = []
    for short in dict.fromkeys(identifier_words(name)):
        if short in vocabulary or short.isdigit() or len(short) < 2:
            continue
        expansion = _expand(short, text_words) or _run_together(short, text_words)
        found += [w for w in expansion if w not in found]
    return found[:MAX_ALIASES]


def _expand(short: str, text_words: Sequence[str]) -> list[str]:
    """The words `short` abbreviates, by the first rule that finds any."""
    # Consecutive initials first ("disk usage"), then with a few words between ("change the current directory").
    for reach in (len(short), 2 * len(short)) if 2 <= len(short) <= 5 else ():
        for start, word in enumerate(text_words):
            if word[0] == short[0] and len(word) > 1:
                initials = _initials(short[1:], text_words[start + 1 : start + reach])
                if initials is not None:
                    return [word, *initials]
    longer = [w for w in text_words if len(w) > len(short)]
    prefixed = next((w for w in longer if w.startswith(short)), None)
    if prefixed:
        return [prefixed]
    if len(short) <= 4 and not _VOWELS & set(short[1:]):
        contracted = next((w for w in longer if w[0] == short[0] and _in_order(short[1:], w[1:])), None)
        if contracted:
            return [contracted]
    return []


def _run_together(short: str, text_words: Sequence[str]) -> list[str]:
    """Two abbreviations run together ("mkdir"), when both halves expand."""
    if len(short) < MIN_RUN_TOGETHER:
        return []
    for cut in range(2, len(short) - 1):
        head, tail = short[:cut], short[cut:]
        first = [head] if head in text_words else _expand(head, text_words)
        second = [tail] if tail in text_words else _expand(tail, text_words)
        if first and second:
            return first + second
    return []


def _initials(letters: str, following: Sequence[str]) -> list[str] | None:
    """Words of `following` whose first letters are `letters`, in order (a few words may sit between)."""
    found: list[str] = []
    for word in following:
        if len(found) == len(letters):
            break
        if word[0] == letters[len(found)] and len(word) > 1:
            found.append(word)
    return found if len(found) == len(letters) else None


def _in_order(letters: str, word: str) -> bool:
    position = 0
    for letter in letters:
        position = word.find(letter, position) + 1
        if not position:
            return False
    return True


def bridged_names(ask: str, name_words: Iterable[str]) -> list[str]:
    """Name words the ask spells out: prefixes of two consecutive ask words run together, or initials.

    The ask's words are taken whole ("WeChat" stays one word): a product's own casing is part of its name.
    """
    ask_words = [w.lower() for w in _WHOLE_WORDS.findall(ask)]
    names = set(name_words)
    asked = set(ask_words)
    found: list[str] = []
    for first, second in itertools.pairwise(ask_words):
        for i in range(2, len(first) + 1):
            for j in range(2, len(second) + 1):
                joined = first[:i] + second[:j]
                if len(joined) >= MIN_RUN_TOGETHER and joined in names and joined not in asked:
                    found.append(joined)
    for size in (3, 4):
        for start in range(len(ask_words) - size + 1):
            initials = "".join(w[0] for w in ask_words[start : start + size])
            if initials in names and initials not in asked:
                found.append(initials)
    return list(dict.fromkeys(found))


# A file path of two segments or more (`/root/markdown/x.md`, `~/notes/a`), or a file name with a common extension.
_PATH = re.compile(
    r"(?<![\w/.])(?:~|\.{1,2})?(?:/[\w.@+-]+){2,}/?"
    r"|\b[\w-]+\.(?:md|txt|pdf|docx?|pptx?|xlsx?|csv|json|html?|py|ts|js|png|jpe?g|svg|gif|mp[34]|wav|zip|ya?ml|xml|log)\b",
    re.IGNORECASE,
)
# Verbs of an ask that wants its file made rather than read: "generate a report at /root/…/daily.md".
_MAKING = re.compile(
    r"\b(?:sav(?:e|ed|es|ing)|writ(?:e|es|ing|ten)|wrote|stor(?:e|ed|es|ing)|export\w*|output\w*"
    r"|creat(?:e|ed|es|ing)|generat(?:e|ed|es|ing)|mak(?:e|es|ing)|made|produc(?:e|ed|es|ing)|draft\w*)\b",
    re.IGNORECASE,
)
FILE_WORDS = ["file"]
WRITE_FILE_WORDS = ["file", "write"]  # the words the tools that write files are named by


def path_words(text: str) -> list[str]:
    """Words the ask means when it names a file: "file", and "write" when it asks to make it (save, write,
    store, export, create, generate, make, produce or draft)."""
    if not _PATH.search(text):
        return []
    return list(WRITE_FILE_WORDS if _MAKING.search(text) else FILE_WORDS)
