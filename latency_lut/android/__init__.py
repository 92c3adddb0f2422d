"""Android phones over ADB: transport (adb-shell), benchmark_model output parsing, thermal guard.

Nothing here imports adb-shell at module load; :mod:`latency_lut.android.adb` imports it when a phone is opened,
so ``import latency_lut`` stays light.
"""
