"""iPhone profiling: a phone cannot run a pushed binary, so the flow is bundle out, results in.

``fbnet-lut build --device <ios device>`` exports a *bundle* (every TFLite micro-model of the space, one
``benchmark_params.json`` per model in the form the TFLite iOS benchmark app reads, a manifest, a README); the app
runs it on the phone; ``fbnet-lut ingest`` parses what the app printed (or a plain JSON/CSV results file) into the
store and the LUT.

Modules: :mod:`.bundle` (manifest and bundle folder), :mod:`.log` (the benchmark_model output the app prints),
:mod:`.results` (log blocks and JSON/CSV rows -> results), :mod:`.ingest` (results -> store -> LUT),
:mod:`.flow` (the build command's iOS branch), :mod:`.automation` (optional pymobiledevice3 driver).
Nothing here imports torch, a runtime or pymobiledevice3 at import time.
"""
