"""Closed forms and exact (sympy) proofs of the identities behind the claims; import explicitly."""
