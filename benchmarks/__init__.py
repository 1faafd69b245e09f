"""Benchmarks, run by hand, never by the test suite or CI.

- `python -m benchmarks.run`: the gateway end to end under wrk, beside the mock upstream called directly
  (see benchmarks/run.py; results in benchmarks/results/).
- `python benchmarks/bench_tokens.py`: token counting alone.
"""
