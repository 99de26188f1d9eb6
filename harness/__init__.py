"""dml-harness: fair, leak-free, reproducible comparison of deep metric learning losses."""

__version__ = "0.1.0"
