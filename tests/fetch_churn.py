"""Consume a topic with pause churn and a frozen heap, as the worker does; print the growth of
the C heap in use. `python tests/fetch_churn.py BOOTSTRAP TOPIC RECORDS fix|nofix`."""

from __future__ import annotations

import asyncio
import gc
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402

from stream.fetch_buffers import free_dropped_fetches  # noqa: E402
from stream.memory import heap_usage  # noqa: E402


async def churn(bootstrap: str, topic: str, records: int) -> tuple[int, int]:
    """(records consumed, bytes of C heap growth)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50,
                                max_partition_fetch_bytes=1024 * 1024,
                                fetch_max_bytes=32 * 1024 * 1024)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)
                                                        or await _partitions(consumer, topic))]
        consumer.assign(tps)
        await consumer.seek_to_beginning()
        rnd = random.Random(7)
        base = heap_usage()["in_use"]
        seen, rounds = 0, 0
        while seen < records and rounds < 5000:
            rounds += 1
            got = await consumer.getmany(timeout_ms=200, max_records=5000)
            seen += sum(len(v) for v in got.values())
            # two partitions paused, the others resumed: what Pipeline._align_reading does
            # while partitions run apart in event time; fetched data of a paused one is dropped
            paused = set(rnd.sample(tps, len(tps) // 2))
            consumer.resume(*[tp for tp in tps if tp not in paused])
            consumer.pause(*paused)
            gc.freeze()  # as Pipeline._collect_garbage after every publish cycle
        return seen, heap_usage()["in_use"] - base
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    for _ in range(50):
        found = consumer.partitions_for_topic(topic)
        if found:
            return found
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no partitions for {topic}")


if __name__ == "__main__":
    bootstrap, topic, records, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if mode == "fix":
        assert free_dropped_fetches()
    seen, growth = asyncio.run(churn(bootstrap, topic, records))
    print(f"{seen} {growth}")
