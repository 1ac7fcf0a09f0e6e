"""Workloads: request traces (readers, writers, importers, generators, statistics).

The trace format and its readers live in :mod:`hwsim.workload.trace`; importers for public
traces (Azure, Mooncake, BurstGPT, Vidur) in :mod:`hwsim.workload.importers`; seeded synthetic
generators in :mod:`hwsim.workload.generate`; one-pass summaries in :mod:`hwsim.workload.stats`.
"""
