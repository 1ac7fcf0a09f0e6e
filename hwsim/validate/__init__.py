"""Validation against published measurements (``hwsim validate``).

Each row puts a published number (``../shared/validation/*.yaml``) beside hwsim's prediction of
it, made with the committed catalog and cost model: no per-case knob, one hardware file per
device. Kinds: operator, communication, end-to-end, offload, power, memory. See
``docs/validation.md`` for the table and what each case assumes.
"""

from hwsim.validate.rows import KINDS, ValidationRow, by_kind, median_abs_error
from hwsim.validate.run import Validation, parse_kinds, run_validation
from hwsim.validate.shared import SharedData, find_shared_dir

__all__ = ["KINDS", "SharedData", "Validation", "ValidationRow", "by_kind", "find_shared_dir",
           "median_abs_error", "parse_kinds", "run_validation"]
