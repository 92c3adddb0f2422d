"""A device farm: one build spread over many devices on many hosts, on Ray.

``config`` reads and checks a farm file (no Ray), ``schedule`` shards the work and lets idle devices steal it
(no Ray), ``runner`` holds the Ray actors and the driver loop. Only ``runner`` imports Ray, and only
``fbnet-lut build --farm`` imports ``runner``; Ray comes with the extra ``pip install fbnet-lut[farm]``.
"""
