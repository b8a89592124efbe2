"""Benchmarks: ``python -m bench`` (or ``make bench``). Results go to bench/results.*."""
