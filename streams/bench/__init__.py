"""Benchmarks, run by ``taskstream bench``: each figure is measured against its baseline in the
same invocation, on the same broker."""
