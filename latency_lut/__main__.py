"""``python -m latency_lut`` is the ``fbnet-lut`` command."""

from latency_lut.cli import run

run()
