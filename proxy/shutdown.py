"""One budget from SIGTERM to exit, within --shutdown-timeout, whatever the backlog and
whether PagerDuty or the store answers (README, "Command line"):

    0 ─ grace ─┬─ work: the sends under way, then (its last part, `closing`) the counts,
               │  the clients and the store ─┬─ margin ─ cutoff ─ margin ─ timeout
    requests in progress                     what is still under way is left: exit

A send cut short goes back to the outbox; the durable stores hold everything else."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Budget"]


@dataclass(frozen=True, slots=True)
class Budget:
    timeout: float = 10.0  # seconds from SIGTERM to exit

    @property
    def margin(self) -> float:
        """Kept between the steps, and for leaving the process."""
        return min(1.0, self.timeout / 10)

    @property
    def cutoff(self) -> float:
        """When whatever is under way is left and the process exits."""
        return self.timeout - self.margin

    @property
    def grace(self) -> float:
        """For the requests in progress."""
        return min(2.0, self.timeout / 4)

    @property
    def work(self) -> float:
        """For the background work: the sends under way, then the counts, the clients and
        the store (Proxy.stop)."""
        return max(0.1, self.cutoff - self.grace - self.margin)

    @property
    def closing(self) -> float:
        """The last part of `work`: the counts, the clients and the store."""
        return min(1.0, self.work / 4)
