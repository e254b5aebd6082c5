"""The device side of edgekit: numpy and one TFLite interpreter, nothing heavier.

    from edgekit.runtime import EdgePolicy
    policy = EdgePolicy.load("bundle/", device="auto")
    action = policy.predict(obs)
"""

from edgekit.runtime.policy import EdgePolicy, EdgeTPUFallbackWarning

__all__ = ["EdgePolicy", "EdgeTPUFallbackWarning"]
