"""The build host's view of SB3: algorithms, policies, Gymnasium envs, safe model loading.

Imports torch, SB3 and gymnasium inside the functions that need them; never
imported by ``edgekit.runtime`` (tests/test_architecture.py checks it).
"""
