"""Fetched Kafka data dropped by the consumer (paused partitions) is freed with the heap frozen.

The worker freezes its heap after every publish cycle; aiokafka's dropped fetches are
reference cycles, so they stayed until the next full collection (a 400 k-call replay: the live
C heap grew ~4.5 MiB per day of history). `stream.fetch_buffers` breaks the cycle. Both runs
consume the same topic the same way in a fresh process: without the fix the heap grows by
most of what was fetched, with it by almost nothing.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

from stream import embedded

CHURN = Path(__file__).with_name("fetch_churn.py")
RECORDS = 160_000  # ~44 MB over 4 partitions
MiB = 1 << 20


def _fill(bootstrap: str, topic: str) -> None:
    async def run() -> None:
        await embedded.create_topics(bootstrap, 4, (topic,))
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False,
                                    linger_ms=5, max_batch_size=256 * 1024)
        await producer.start()
        try:
            payload = b"x" * 250
            for i in range(0, RECORDS, 5000):
                sent = [await producer.send(topic, payload, partition=i // 5000 % 4)
                        for _ in range(5000)]
                await asyncio.gather(*sent)
        finally:
            await producer.stop()

    asyncio.run(run())


def _churn(bootstrap: str, topic: str, mode: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, str(CHURN), bootstrap, topic, str(RECORDS), mode],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    seen, growth = out.stdout.split()[-2:]
    return int(seen), int(growth)


def test_dropped_fetches_are_freed_while_the_heap_is_frozen(stack):
    topic = f"churn-{uuid.uuid4().hex[:8]}"
    _fill(stack.bootstrap, topic)
    seen, leaked = _churn(stack.bootstrap, topic, "nofix")
    assert seen >= RECORDS
    assert leaked > 24 * MiB, f"the control run did not reproduce the leak ({leaked / MiB:.1f} MiB)"
    seen, growth = _churn(stack.bootstrap, topic, "fix")
    assert seen >= RECORDS
    print(f"fetch churn: control +{leaked / MiB:.1f} MiB, fixed +{growth / MiB:.1f} MiB")
    assert growth < 8 * MiB, f"C heap grew {growth / MiB:.1f} MiB with the fix (control {leaked / MiB:.1f})"
