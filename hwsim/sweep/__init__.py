"""Sweeps: expand field-path axes into configurations, run them locally or on Dask, keep one row each.

``run.plan_sweep`` checks a sweep file and expands it (``grid``); ``run.run_sweep`` runs it on an
executor (``executors``), each worker building and estimating or simulating configurations
(``worker``) whose rows land in Parquet parts and one consolidated file (``store``).
"""
