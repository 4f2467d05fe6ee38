"""The public API for papers and claims (stable: plugins and claim files import only from here).

A paper plugin is a package that exposes a :class:`Paper` under the entry-point group
``icl_theory_verifier.papers``; its claim modules call :func:`register` for each :class:`Claim`. A claim
file (``verify run --claims FILE.py``) calls :func:`register_paper` and :func:`register` itself.
See docs/plugins.md for a worked example.

The claim interface: ``sweep(budget) -> configs`` (plain dicts), ``measure(configs, ctx) -> rows`` (one
plain-data row per config), ``judge(configs, rows, params, ctx) -> Outcome``; ``params`` hold the
prediction, which ``resolution`` names, and ``assumptions``/``design`` guard the configs.
"""
from sims.seeds import derive as derive_seed
from theory.errors import InputError
from verify.figures import loglog_figure, trajectory_figure
from verify.fits import loglog_fit
from verify.papers import ENTRY_POINT_GROUP, Paper, Subcommand
from verify.quality import planted_problems
from verify.registry import (Assumption, Claim, Resolution, RunContext, needs_distinct, register,
                             register_paper)
from verify.verdicts import Outcome, Verdict

__all__ = ["ENTRY_POINT_GROUP", "Paper", "Subcommand", "Assumption", "Claim", "Resolution", "RunContext",
           "needs_distinct", "register", "register_paper", "Outcome", "Verdict", "InputError", "derive_seed",
           "loglog_fit", "loglog_figure", "trajectory_figure", "planted_problems"]
