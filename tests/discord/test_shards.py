"""The shard line of /status."""

from __future__ import annotations

from bot.discord.shards import ShardHealth, shard_summary, shards_down


def test_one_line_per_few_shards_and_a_count_for_many() -> None:
    assert shard_summary([]) == "Discord: not connected yet"
    assert shard_summary([ShardHealth(0, True, 41.6)]) == "Discord: shard 0 connected (42 ms)"
    two = [ShardHealth(0, True, None), ShardHealth(1, False, None)]
    assert shard_summary(two) == "Discord: shard 0 connected, shard 1 disconnected"
    assert shards_down(two) == [1]
    many = [ShardHealth(i, i not in (3, 7), 40.0) for i in range(16)]
    assert shard_summary(many) == "Discord: 14 of 16 shards connected; down: 3, 7"
