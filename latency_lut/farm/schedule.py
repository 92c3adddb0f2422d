"""Sharding with work stealing: the (op, round) tasks of one LUT spread over the devices that share it.

Pure bookkeeping, no Ray: the runner asks for a device's next task, reports results and drops devices.
Round r of the i-th op goes to device (i + r) mod n, so an op's rounds are timed on different devices and its
entry can show how much they differ. Each device works through its shard in order (round by round); a device
whose shard is empty steals from the back of the longest shard, so fast devices are never idle while work is
left. A dropped device's unfinished tasks (its in-flight one included) go back to the devices still alive.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from random import Random


def round_order(keys: Sequence[str], seed: int, r: int) -> list[str]:
    """Round ``r``'s shuffled order of ``keys``: each round its own, so a burst of load lands on other ops."""
    out = list(keys)
    Random(f"build-{seed}-round-{r}").shuffle(out)
    return out


@dataclass(frozen=True, order=True)
class Task:
    """One timing of one op: the op's key and the interleaved round it belongs to."""

    round: int
    key: str


class WorkQueue:
    def __init__(self, tasks: Sequence[Task], devices: Sequence[str], order: Sequence[str]) -> None:
        """``tasks`` in the order they should run, ``devices`` the labels, ``order`` the op keys (for sharding)."""
        if not devices:
            raise ValueError("a work queue needs at least one device")
        index = {k: i for i, k in enumerate(order)}
        self.shards: dict[str, deque[Task]] = {d: deque() for d in devices}
        for t in tasks:
            self.shards[devices[(index[t.key] + t.round) % len(devices)]].append(t)
        self.stolen = 0
        self.returned = 0

    @property
    def alive(self) -> list[str]:
        return list(self.shards)

    def __len__(self) -> int:
        return sum(map(len, self.shards.values()))

    def next(self, device: str) -> Task | None:
        """The device's next task: its own shard's first, else the last of the longest other shard."""
        own = self.shards[device]
        if own:
            return own.popleft()
        victim = max(self.shards.values(), key=len)
        if not victim:
            return None
        self.stolen += 1
        return victim.pop()

    def unget(self, device: str, task: Task) -> None:
        """A task the device took but cannot start yet (its artifact is still being exported): first in its line."""
        self.shards[device].appendleft(task)

    def put_back(self, task: Task) -> None:
        """A task that did not finish: first in line on the least loaded device still alive."""
        if not self.shards:
            raise RuntimeError("no device left to take the task")
        min(self.shards.values(), key=len).appendleft(task)
        self.returned += 1

    def drop(self, device: str, in_flight: Task | None = None) -> list[Task]:
        """Remove a device; its in-flight task and shard go to the others. Returns the tasks left over when it
        was the last device (they stay unfinished)."""
        left = list(self.shards.pop(device))
        if in_flight is not None:
            left.insert(0, in_flight)
        if not self.shards:
            return left
        for t in reversed(left):
            self.put_back(t)
        return []
