"""hwsim: a hardware simulator and cost model for serving Mixture-of-Experts LLMs."""

__version__ = "0.1.0"
