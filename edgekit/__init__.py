"""edgekit: deploy Stable-Baselines3 policies as fully int8 models on a Coral Edge TPU."""

__version__ = "0.1.0"
