"""Reading a /readyz body: which dependencies it reports as not ready, whatever its exact shape.

The supervisor only needs this to explain a failed start, so it accepts the common shapes
(`{"checks": {"redis": "ok", "accounting": "unavailable"}}`, `{"accounting": false}`,
`{"deps": [{"name": "redis", "ok": false}]}`, `{"not_ready": ["optimizer"]}`) rather than one.
"""

from __future__ import annotations

_GOOD = frozenset({"ok", "ready", "serving", "up", "true", "healthy", "pass", "passing"})
_VERDICT_KEYS = ("ok", "ready", "healthy")
# Keys that describe the response rather than a dependency.
_META_KEYS = frozenset({"version", "service", "name", "time", "timestamp", "uptime", "uptime_seconds", "request_id"})
# Keys whose list value names the dependencies that are not ready.
_FAILING_LIST_KEYS = ("not_ready", "unready", "failing", "failed", "missing", "pending")


def _verdict(value: object) -> bool | None:
    """True/False when `value` reads as a readiness verdict, None when it is something else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.lower() in _GOOD
    if isinstance(value, dict):
        for key in _VERDICT_KEYS:
            if isinstance(value.get(key), bool):
                return bool(value[key])
        status = value.get("status")
        if isinstance(status, str):
            return status.lower() in _GOOD
    return None


def _detail(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("error", "detail", "message", "status"):
            if isinstance(value.get(key), str):
                return str(value[key])
    return ""


def not_ready(body: object) -> list[str]:
    """Dependencies `body` reports as not ready, as `name` or `name (detail)`."""
    found: list[str] = []

    def add(name: str, value: object) -> None:
        detail = _detail(value)
        found.append(f"{name} ({detail})" if detail and detail.lower() != name.lower() else name)

    def walk(node: object, top: bool) -> None:
        if isinstance(node, list):
            for item in node:
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    if _verdict(item) is False:
                        add(item["name"], item)
                else:
                    walk(item, False)
            return
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            if key.lower() in _META_KEYS or (top and key in ("status", *_VERDICT_KEYS)):
                continue  # metadata, or the overall verdict: not a dependency
            if key.lower() in _FAILING_LIST_KEYS and isinstance(value, list):
                found.extend(str(item) for item in value)
                continue
            verdict = _verdict(value)
            if verdict is False:
                add(key, value)
            elif verdict is None:
                walk(value, False)

    walk(body, True)
    return found
