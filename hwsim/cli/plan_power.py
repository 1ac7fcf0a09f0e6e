"""``hwsim plan`` commands for power planning (registered on the group in :mod:`hwsim.cli.plan`)."""

from __future__ import annotations

from hwsim.cli.plan import plan  # noqa: F401  (commands below register on it)
