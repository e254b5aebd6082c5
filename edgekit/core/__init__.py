"""What the build host and the device share: numpy and the standard library only.

Errors, spaces, quantization arithmetic, observation encoding, SB3's action
post-processing, the env's record and the metrics both the build and the report
compute. Nothing here imports gymnasium, torch, SB3, TensorFlow or an
interpreter (tests/test_architecture.py checks it).
"""
