"""The records the pipeline carries: the field tables (ticks, news), their validation
and JSON, the Arrow columns a poll is decoded into, the stream registry, and the
batch and dead-letter types every later stage shares.
"""
