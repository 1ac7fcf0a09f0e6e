"""``hwsim experts`` commands about expert routing (registered on the group in :mod:`hwsim.cli.experts`)."""

from __future__ import annotations

from hwsim.cli.experts import experts  # noqa: F401  (commands below register on it)
