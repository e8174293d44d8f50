"""How a routing mode is spelled in plan stats, request logs and x-orqen-routing, where the optimizer,
accounting and the dashboard all read it."""

from __future__ import annotations

# A/B control traffic: every tool was forwarded and the router's decision only recorded, so the
# tools the model then calls measure the router's recall. The mode reads "<mode>_ab_ctrl".
AB_CONTROL_SUFFIX = "_ab_ctrl"
