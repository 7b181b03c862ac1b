"""The benchmark suite and the soak: tools of the source checkout, not part of the wheel.

``taskstream bench`` (run from a checkout) and ``python -m bench.soak`` / ``python -m
bench.failover`` / ``python -m bench.workload`` run them; README.md here records the figures.
"""
