"""``verify simulate``: raw trajectories written as JSON or NPZ."""
from __future__ import annotations

import json
from pathlib import Path

from sims.softmax_icl import SoftmaxConfig, simulate_full, simulate_reduced
from theory.errors import InputError
from verify import atomic

__all__ = ["simulate_softmax_command", "MAX_LOGGED_FLOATS", "logged_floats", "full_model_floats"]

MAX_LOGGED_FLOATS = 200_000_000  # refuse runs whose logs would exceed ~1.6 GB of float64 before allocating


def logged_floats(K: int, steps: int, log_every: int) -> int:
    """Values of a logged trajectory: scores and attention (T, K, K), per-query loss (T, K), loss (T,)."""
    return (steps // log_every + 2) * (2 * K * K + K + 1)


def full_model_floats(K: int, d: int, batch: int, N: int) -> int:
    """Upper estimate of the full model's working values: Q and its gradient (d, d), and per prompt of a
    minibatch its token indices, scores, weights and attention (batch, N + K)."""
    return 2 * d * d + 4 * batch * (N + K)


def _config_from_args(args) -> SoftmaxConfig:
    K = args.K
    common = dict(d=args.d if args.d is not None else K, eta=args.eta, steps=args.steps, N=args.N,
                  seed=args.seed, batch=args.batch, log_every=args.log_every)
    if args.p is not None:
        cfg = SoftmaxConfig(K=K, p=args.p, **common)
    elif args.dominant is not None:
        if not 0 < args.dominant < 1:
            raise InputError(f"--dominant must lie in (0, 1), got {args.dominant}")
        cfg = SoftmaxConfig.dominant(K, args.dominant, **common)
    else:
        cfg = SoftmaxConfig.balanced(K, **common)
    cfg.validate()
    if args.full and cfg.N is None:
        raise InputError("--full simulates explicit prompts and needs a finite --N")
    logged = logged_floats(cfg.K, cfg.steps, cfg.log_every)
    if logged > MAX_LOGGED_FLOATS:
        raise InputError(f"the log would hold {logged:.3g} floats (limit {MAX_LOGGED_FLOATS:.1g}); "
                         "raise --log-every or lower --steps/--K")
    working = full_model_floats(cfg.K, cfg.d, cfg.batch, cfg.N) if args.full else 0
    if working > MAX_LOGGED_FLOATS:
        raise InputError(f"the full model would hold {working:.3g} floats per step (limit "
                         f"{MAX_LOGGED_FLOATS:.1g}); lower --batch, --N or --d")
    return cfg


def simulate_softmax_command(args) -> int:
    """Run one softmax config and write t, A, B, Attn, per-query and total loss per logged step."""
    from verify.cli import resolve_device

    cfg = _config_from_args(args)
    out: Path | None = args.out
    if out is not None and out.suffix not in (".json", ".npz"):
        raise InputError(f"--out must end in .json or .npz, got {out}")
    if out is not None:
        atomic.check_target(out)
    simulate = simulate_full if args.full else simulate_reduced
    traj = simulate([cfg], device=resolve_device(args.device))
    if out is None:
        print(json.dumps(traj.to_json_dict()))
    elif out.suffix == ".json":
        atomic.write_json(out, traj.to_json_dict())
    else:
        atomic.write_npz(out, traj.to_arrays())
    if out is not None:
        final = traj.select(0)
        print(f"wrote {out}: {len(traj.t)} logged steps; final loss {float(final.loss[0, -1]):.6g}, "
              f"target attention {[round(float(a), 4) for a in final.target_attention[0, -1]]}")
    return 0
