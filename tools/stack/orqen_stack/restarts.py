"""When the local supervisor restarts a service that exited on its own, and when it gives up."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Exponential backoff between restarts, reset once a service has stayed up a while."""

    first_delay: float = 0.5
    max_delay: float = 30.0
    # A service that ran this long was healthy: its next exit starts the backoff afresh.
    stable_after: float = 60.0
    # Restarts in a row, each of which exited within `stable_after`, before the supervisor gives up:
    # a service that cannot stay up (bad configuration, a port taken) stops the stack with its log.
    max_restarts: int = 5


class RestartBackoff:
    """The restart history of one service under a policy."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        # Restarts since the service last stayed up for `stable_after`.
        self.restarts = 0

    def next_delay(self, uptime: float) -> float | None:
        """The wait before restarting a service that exited after `uptime` seconds; None means give up."""
        policy = self.policy
        if uptime >= policy.stable_after:
            self.restarts = 0
        if self.restarts >= policy.max_restarts:
            return None
        self.restarts += 1
        return float(min(policy.first_delay * 2 ** (self.restarts - 1), policy.max_delay))
