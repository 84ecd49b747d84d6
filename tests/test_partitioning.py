"""The producers' partitioner puts every key where aiokafka's own puts it."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner as KafkaPartitioner
from aiokafka.partitioner import murmur2 as kafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.partitioning import DefaultPartitioner, murmur2


@settings(max_examples=2000, deadline=None)
@given(st.binary(min_size=0, max_size=80))
def test_murmur2_is_kafkas(key):
    assert murmur2(key) == kafka_murmur2(key)


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_every_key_lands_on_kafkas_partition(key, n):
    partitions = list(range(n))
    assert DefaultPartitioner()(key, partitions, partitions) == \
        KafkaPartitioner()(key, partitions, partitions)


def test_known_vectors_and_customer_hash_keys():
    """Java's murmur2 vectors (Kafka's UtilsTest) and keys shaped like the FCR records'."""
    assert murmur2(b"21") == -973932308 & 0xFFFFFFFF
    assert murmur2(b"foobar") == -790332482 & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-long-string") == -985981536 & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-longer-string") == -1486304829 & 0xFFFFFFFF
    for i in range(2000):
        key = f"{i * 2654435761 % 2**128:032x}".encode()
        assert murmur2(key) == kafka_murmur2(key)


def test_a_record_without_a_key_goes_to_an_available_partition():
    assert DefaultPartitioner()(None, [0, 1, 2, 3], [2]) == 2
    assert DefaultPartitioner()(None, [0, 1, 2, 3], []) in (0, 1, 2, 3)
