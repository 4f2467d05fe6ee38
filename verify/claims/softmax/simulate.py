"""``verify simulate``: raw trajectories written as JSON or NPZ."""
from __future__ import annotations

import json
from pathlib import Path

from sims.softmax.config import embedding_dim
from sims.softmax.counts import DEFAULT_COUNT_SAMPLES, EXACT_ENUMERATION_LIMIT
from sims.softmax.dynamics import SoftmaxConfig, simulate_full, simulate_reduced
from theory.errors import InputError
from verify import argtypes
from verify import atomic, limits

__all__ = ["simulate_softmax_command", "STATE_COPIES", "VECTOR_COPIES", "DRAW_COPIES", "STEP_WORDS",
           "PROMPT_COPIES", "Q_COPIES", "logged_floats", "count_vectors", "softmax_floats", "full_model_floats"]

# Copies of the arrays a softmax run holds at once, from peak RSS on the CPU (K = 400 and 800; N = 1, 2,
# 1e4, 1e5, 3e5; full model batch 4096 and d = 1500), rounded up:
STATE_COPIES = 32  # (K, K) state, its gradient and temporaries besides the logs (measured ~21)
VECTOR_COPIES = 6  # per count vector of the expectation: attention, gradient and temporaries (M, K, K) (~4)
DRAW_COPIES = 6  # per Monte Carlo token of a step: random words, halves, features (count_samples, N) (~3.6)
STEP_WORDS = 8  # per step: precomputed counter keys of every stream (measured ~5.5)
PROMPT_COPIES = 10  # full model, per prompt token of a minibatch: indices, scores, weights, attention (~7)
Q_COPIES = 8  # full model: Q, its gradient and temporaries (d, d) (~6.6)


def logged_floats(K: int, steps: int, log_every: int) -> int:
    """Values of a logged trajectory: scores and attention (T, K, K), per-query loss (T, K), loss (T,)."""
    return (steps // log_every + 2) * (2 * K * K + K + 1)


def count_vectors(support: int, N: int | None) -> tuple[int, bool]:
    """(count vectors per step, sampled?) of the expectation over prompts (:mod:`sims.softmax.counts`): one
    for N infinite; all binom(N + support - 1, support - 1) when at most its exact limit; else its Monte
    Carlo sample. The binomial is built term by term and abandoned past the limit (N may be huge)."""
    if N is None:
        return 1, False
    number = 1
    for j in range(1, support):  # binom(N + j, j) from binom(N + j - 1, j - 1)
        number = number * (N + j) // j
        if number > EXACT_ENUMERATION_LIMIT:
            return DEFAULT_COUNT_SAMPLES, True
    return number, False


def softmax_floats(K: int, N: int | None, steps: int, log_every: int, *, support: int | None = None,
                   full: bool = False, d: int | None = None, batch: int = 512) -> int:
    """Upper estimate of the float64/int64 values one softmax config holds at once (memory policy, not a
    formula): its logs; the state; the count vectors of the expectation (M, K, K); the Monte Carlo token
    draws (count_samples, N) when it samples; per-step counter keys; and, for the full model, its working
    values (:func:`full_model_floats`). ``support``: features with p > 0 (default K)."""
    vectors, sampled = count_vectors(K if support is None else support, N)
    words = (logged_floats(K, steps, log_every) + STATE_COPIES * K * K + VECTOR_COPIES * vectors * K * K
             + (DRAW_COPIES * DEFAULT_COUNT_SAMPLES * N if sampled else 0) + STEP_WORDS * (steps + 1))
    return words + (full_model_floats(K, embedding_dim(K, d), batch, N) if full else 0)


def full_model_floats(K: int, d: int, batch: int, N: int) -> int:
    """Upper estimate of the full model's working values: Q and its gradient (d, d), and per prompt of a
    minibatch its token indices, scores, weights and attention (batch, N + K)."""
    return Q_COPIES * d * d + PROMPT_COPIES * batch * (N + K)


def _check_size(args) -> None:
    """Refuse, from the raw options and before any config is built (p alone has K entries), a run over
    the memory budget (:mod:`verify.limits`)."""
    # Values below 1 are named by the config's validation; clamped to 1 here, the estimate still bounds what
    # is built before it (p has K entries).
    K, steps, log_every, batch = (max(1, v) for v in (args.K, args.steps, args.log_every, args.batch))
    d = max(1, embedding_dim(K, args.d))
    N = max(1, args.N) if args.N is not None else None
    support = sum(v > 0 for v in args.p) if args.p is not None else K  # --dominant C < 1: every feature
    full = args.full and N is not None  # --full without N: the config refuses it
    words = softmax_floats(K, N, steps, log_every, support=support, full=full, d=d, batch=batch)
    full = f" --full --d {d} --batch {batch}" if full else ""
    limits.check_floats(f"verify simulate softmax --K {K} --steps {steps} --log-every {log_every} --N "
                        f"{'inf' if N is None else N}{full}", words,
                        "lower --K, --steps, --N, --batch or --d, or raise --log-every")


def _config_from_args(args) -> SoftmaxConfig:
    _check_size(args)
    K = args.K
    common = dict(d=args.d, eta=args.eta, steps=args.steps, N=args.N,
                  seed=args.seed, batch=args.batch, log_every=args.log_every)
    if K < 2:  # balanced and dominant p divide by K and K - 1: let the config name the bad K first
        SoftmaxConfig(K=K, p=(), **common).validate()
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
    return cfg


def simulate_softmax_command(args) -> int:
    """Run one softmax config and write t, A, B, Attn, per-query and total loss per logged step."""
    from sims.devices import resolve_device

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


def add_arguments(parser) -> None:
    """The options of ``verify simulate softmax``."""
    parser.add_argument("--K", type=int, default=5, help="number of features")
    parser.add_argument("--d", type=int, default=None, help="embedding dimension (default K)")
    parser.add_argument("--N", type=argtypes.int_or_inf, default=None, help="prompt length, an integer or inf (default inf)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--p", type=argtypes.float_list, default=None, help="feature probabilities, comma-separated")
    group.add_argument("--dominant", type=argtypes.finite_float, default=None, metavar="C", help="p_1 = C, rest equal")
    parser.add_argument("--eta", type=argtypes.finite_float, default=1.0)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--log-every", type=int, default=1)
    parser.add_argument("--seed", type=argtypes.seed, default=0, help="an integer in [0, 2^63)")
    parser.add_argument("--batch", type=int, default=512, help="prompts per step (full model)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--reduced", dest="full", action="store_false", help="exact reduced dynamics (default)")
    mode.add_argument("--full", dest="full", action="store_true", help="full model on sampled prompts")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--out", type=Path, default=None, help="FILE.json or FILE.npz (default: JSON on stdout)")
    parser.set_defaults(full=False)


run = simulate_softmax_command
