"""STAND-IN for the ``tflite_runtime`` package, for edgekit's tests only (put tests/standins on PYTHONPATH).

It is ai_edge_litert's interpreter under tflite_runtime's name, with one fault injected on request: with
``EDGEKIT_STANDIN_FAIL_AFTER=N`` set, an interpreter created with a delegate (what edgekit opens on an
Edge TPU) raises ``RuntimeError`` from every invoke after its first N, as a libedgetpu does when the USB
accelerator is pulled out mid-run. Interpreters without a delegate (the CPU model) fail so only with
``EDGEKIT_STANDIN_FAIL_CPU=1`` too (a model whose kernels raise on some inputs). It runs nothing on a TPU
and claims nothing about one.
"""
