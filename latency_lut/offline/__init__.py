"""Devices run by bundle rather than driven live: the bundle out, results in flows.

A phone that cannot run a pushed binary (an iPhone), or one this host cannot reach, gets a *bundle* of models to
run (:mod:`.bundles`), and what it printed is read back into the store and a LUT (:mod:`.ingest`). These flows sit
above the backends: they call the build, the networks and the calibration, which device code never does.
"""
