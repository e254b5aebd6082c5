"""The Raspberry Pi side's setup facts: the table of tested runtime pairs and what `edgekit doctor` reads.

Light on purpose (standard library only): device/setup-pi.sh runs ``edgekit.device.pairs`` before
edgekit is installed, and ``edgekit doctor`` must not import an interpreter, TensorFlow or torch.
"""
