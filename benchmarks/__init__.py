"""Benchmarks (``make bench``): each prints its numbers and the baseline it compares with."""
