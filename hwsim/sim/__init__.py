"""The model of time: SimPy processes for arrivals, routing, engines, KV transfer and metrics."""
