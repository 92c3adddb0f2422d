"""Built-in device descriptors, installed as the package data ``latency_lut.descriptors``."""
