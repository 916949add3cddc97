"""Experiments of the paper's section V (``reproduce``) and the throughput benchmark (``bench``)."""
