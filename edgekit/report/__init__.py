"""The quantization-error report: how far a bundle's int8 policy is from the float one.

``edgekit.report.build_report.write_report`` writes ``report.json`` and
``report.html``; ``metrics`` holds the numeric comparison shared with the build.
"""
