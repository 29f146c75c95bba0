"""The lowest layer: verdicts and their comparisons, the claim kit and registry, errors, input validation,
devices, thread shares and test profiles. Imports nothing else from theorycheck."""
