"""The pipeline benchmark and its phases (``python -m bench.pipeline_bench``; docs/development.md,
"Benchmark"). Not part of the product: the wheel leaves it out, it runs from a checkout."""
