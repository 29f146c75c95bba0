"""What the checks run on: networks (reading any nn.Module, building specs), data sets, the seeded
case sampler, the audit case plumbing and the Hypothesis strategies."""
