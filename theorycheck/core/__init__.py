"""The lowest layer: verdicts and their comparisons, the claim kit and registry, errors, devices,
thread shares, tensor helpers and test profiles. Imports nothing else from theorycheck."""
