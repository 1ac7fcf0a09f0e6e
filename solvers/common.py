"""What every planner shares: building a named MILP with PuLP, solving it, reporting how well.

* :func:`make_solver` picks the backend: CBC (bundled with PuLP) by default, HiGHS when
  ``highspy`` is installed and asked for (``backend="auto"`` prefers HiGHS when present).
* :func:`solve` runs a :class:`pulp.LpProblem` under a time limit and a relative optimality gap,
  optionally dumps it as an LP file first (``--write-lp``), and returns a frozen
  :class:`SolveReport`: status, objective, best bound, the gap actually proven, wall time and
  solver name. CBC's bound is read from its log (PuLP does not expose it).
* :func:`require_names` checks that every constraint of a problem is named (the planners'
  rule: an infeasible or surprising plan must be explainable constraint by constraint).

PuLP is imported only in ``solvers/`` (``tests/test_layers.py`` holds that rule).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pulp

from hwsim.errors import InfeasibleError, SolverError

__all__ = ["SolveReport", "make_solver", "solve", "require_names", "BACKENDS"]

BACKENDS = ("auto", "cbc", "highs")


@dataclass(frozen=True, slots=True)
class SolveReport:
    """How a solve went. ``gap`` is ``|objective - bound| / max(|objective|, 1e-9)`` when the
    solver reported a bound (``nan`` otherwise); ``optimal`` means proven within ``gap_limit``."""

    solver: str
    status: str
    objective: float
    bound: float
    gap: float
    gap_limit: float
    time_limit_s: float
    wall_s: float

    @property
    def optimal(self) -> bool:
        return self.status == "Optimal"

    def describe(self) -> str:
        gap = "unknown" if math.isnan(self.gap) else f"{self.gap:.2%}"
        return (f"{self.solver}: {self.status.lower()}, objective {self.objective:.6g}, gap {gap} "
                f"(limit {self.gap_limit:.2%}), {self.wall_s:.2f} s of {self.time_limit_s:g} s")

    def as_dict(self) -> dict[str, object]:
        return {"solver": self.solver, "status": self.status, "objective": self.objective,
                "bound": None if math.isnan(self.bound) else self.bound,
                "gap": None if math.isnan(self.gap) else self.gap, "gap_limit": self.gap_limit,
                "time_limit_s": self.time_limit_s}


def _highs_available() -> bool:
    try:
        return bool(pulp.HiGHS().available())
    except Exception:  # noqa: BLE001 - any failure means "not usable here"
        return False


def make_solver(backend: str = "cbc", *, time_limit_s: float = 30.0, gap: float = 0.01,
                threads: int | None = None, log_path: str | None = None) -> tuple[str, pulp.LpSolver]:
    """``(name, solver)`` for ``backend`` (``cbc``, ``highs`` or ``auto``)."""
    if backend not in BACKENDS:
        raise SolverError(f"unknown solver backend {backend!r}; known: {', '.join(BACKENDS)}")
    use_highs = backend == "highs" or (backend == "auto" and _highs_available())
    if use_highs:
        if not _highs_available():
            raise SolverError("the HiGHS backend needs highspy: pip install highspy")
        return "highs", pulp.HiGHS(msg=False, timeLimit=time_limit_s, gapRel=gap, threads=threads)
    return "cbc", pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s, gapRel=gap, threads=threads,
                                    logPath=log_path)


def require_names(problem: pulp.LpProblem) -> None:
    """Raise if a constraint of ``problem`` carries PuLP's automatic name (``_C1``...)."""
    unnamed = [name for name in problem.constraints if re.fullmatch(r"_C\d+", name)]
    if unnamed:
        raise ValueError(f"{len(unnamed)} constraints of '{problem.name}' are unnamed (e.g. {unnamed[0]})")


_CBC_BOUND = re.compile(r"^(?:Lower|Upper) bound:\s+(-?[\d.eE+-]+)", re.MULTILINE)
_CBC_OBJECTIVE = re.compile(r"^Objective value:\s+(-?[\d.eE+-]+)", re.MULTILINE)


def solve(problem: pulp.LpProblem, *, backend: str = "cbc", time_limit_s: float = 30.0, gap: float = 0.01,
          threads: int | None = None, write_lp: str | Path | None = None) -> SolveReport:
    """Solve ``problem`` in place; return the report.

    Raises
    ------
    InfeasibleError
        The solver proved the problem infeasible (callers name the constraint groups).
    SolverError
        No feasible solution within the time limit, or the solver failed.
    """
    require_names(problem)
    if write_lp is not None:
        Path(write_lp).parent.mkdir(parents=True, exist_ok=True)
        problem.writeLP(str(write_lp))
    fd, log = tempfile.mkstemp(prefix="hwsim-solver-", suffix=".log")
    os.close(fd)
    try:
        name, solver = make_solver(backend, time_limit_s=time_limit_s, gap=gap, threads=threads, log_path=log)
        t0 = time.perf_counter()
        try:
            problem.solve(solver)
        except pulp.PulpSolverError as err:
            raise SolverError(f"{name} failed on '{problem.name}': {err}") from None
        wall = time.perf_counter() - t0
        text = Path(log).read_text(errors="replace") if name == "cbc" else ""
    finally:
        Path(log).unlink(missing_ok=True)
    status = pulp.LpStatus[problem.status]
    if status == "Infeasible":
        raise InfeasibleError(f"the '{problem.name}' model is infeasible")
    objective = pulp.value(problem.objective)
    if objective is None or problem.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        raise SolverError(f"{name} found no feasible solution of '{problem.name}' within {time_limit_s:g} s "
                          f"(status {status}); raise the time limit")
    objective = float(objective)
    bound = math.nan
    if name == "cbc":
        found = _CBC_BOUND.search(text)
        if found:
            bound = float(found.group(1))
        elif problem.sol_status == pulp.LpSolutionOptimal and _CBC_OBJECTIVE.search(text):
            bound = objective
    else:
        model = getattr(solver, "_model", None) or getattr(problem, "solverModel", None)
        info = getattr(model, "getInfo", None)
        if info is not None:
            bound = float(info().mip_dual_bound)
    if problem.sol_status == pulp.LpSolutionOptimal and math.isnan(bound):
        bound = objective
    value_gap = abs(objective - bound) / max(abs(objective), 1e-9) if not math.isnan(bound) else math.nan
    label = "Optimal" if problem.sol_status == pulp.LpSolutionOptimal else "Feasible (time limit)"
    return SolveReport(solver=name, status=label, objective=objective, bound=bound, gap=value_gap,
                       gap_limit=gap, time_limit_s=time_limit_s, wall_s=wall)
