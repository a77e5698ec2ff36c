"""Switchboard benchmarks: a ghz-like load tool, bare baselines and the `make bench` table.

Run from a checkout (the package is not installed with Switchboard):
`python -m bench.run` (the table) and `python -m bench.loadtool --config bench/ghz/chat.json`
(the built-in load tool, for machines without ghz). See docs/benchmarks.md.
"""
