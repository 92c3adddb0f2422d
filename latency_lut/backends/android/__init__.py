"""Android phones over ADB: transport (adb-shell), the backend, descriptor fields, offline bundles.

Nothing here imports adb-shell at module load; :mod:`latency_lut.backends.android.adb` imports it when a phone is
opened, so ``import latency_lut`` stays light.
"""
