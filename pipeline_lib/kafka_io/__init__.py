"""Kafka in and out: the producer; the consumer loop, its broker-free core
(batching), the committer and the zombie fence (membership); dead letters; reports.
"""
