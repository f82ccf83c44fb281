"""The sharded job's progress counter, as a Ray actor's class, in a module of its own.

A Ray actor's process imports the module that defines its class. Defined in ``sharding`` (which
imports torch, the models and the catalog), the counter's process spent seconds of CPU on imports
it never uses, on the same cores as the shards' own start; here it imports nothing but this file.
"""

from __future__ import annotations


class Progress:
    """Images done per shard, reported by the tasks after each batch; a retried shard starts again
    from its new position, so the total never counts an image twice."""

    def __init__(self) -> None:
        self.done: dict[int, int] = {}

    def report(self, shard: int, position: int) -> None:
        self.done[shard] = position

    def total(self) -> int:
        return sum(self.done.values())
