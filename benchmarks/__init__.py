"""Benchmarks of the tracker against the langchain_community seeds and peers (``make bench``).

``python -m benchmarks.run`` measures, interleaved in rounds, and rewrites
``benchmarks/RESULTS.md``.
Nothing here asserts on times: these are measurements, not tests.
"""
