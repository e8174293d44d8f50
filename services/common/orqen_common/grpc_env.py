"""gRPC settings that only the environment carries, set before grpc loads: it reads them once, as it loads.

Each service's package applies them first thing (its `__init__`), so `python -m orqen_<service>`
has them however it is started: `make up`, the images, a shell. A value already in the
environment is the operator's and is kept.
"""

from __future__ import annotations

import os

# gRPC's clients on gRPC's own TCP code instead of its EventEngine endpoints (an experiment gRPC
# 1.85 still lets one turn off): a call's reads and writes are then done by the thread that polls
# for its completions, instead of being handed between EventEngine's threads and that poller. A
# streamed call cost its client 20-25% less CPU (about 40 us), a unary one up to a tenth less; the
# edge spent about 50 us less a stream at concurrency 16 (docs/performance.md). Servers gained
# nothing from the listener's counterpart, so they keep EventEngine.
EXPERIMENTS = "-event_engine_client"


def apply() -> None:
    os.environ.setdefault("GRPC_EXPERIMENTS", EXPERIMENTS)
