"""Task code shared by families (e.g. `classification`: predict, loss, evaluate, checks, plots)."""
