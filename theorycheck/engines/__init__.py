"""Runs and numerics — gradient flow, GD/SGD, coupled SGD, the recorder, the batched ensemble, SVM,
kernels, Euler sums, loss constants. Engines return records; claims turn records into verdicts."""
