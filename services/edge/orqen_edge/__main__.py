"""`python -m orqen_edge`: run the edge."""

from __future__ import annotations

import sys

from orqen_common import aio
from orqen_common.settings import load_settings
from orqen_edge.server import serve
from orqen_edge.settings import EdgeSettings


def main(argv: list[str] | None = None) -> int:
    aio.run(serve(load_settings(EdgeSettings)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
