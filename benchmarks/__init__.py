"""Performance runs of the Perilflow kernel (``python -m benchmarks.<name>``); see benchmarks/README.md."""
