"""Fork server of the fuzz tier: imports the verifier once, then runs each requested ``verify`` command in a
forked child under an address-space limit (RLIMIT_AS) and a wall-clock limit, as a fresh process would,
without paying the interpreter and torch start-up (~2 s) per case.

Protocol (one JSON object per line): request ``{"argv", "cwd", "env", "address_space", "timeout", "stdout",
"stderr"}`` on stdin; reply ``{"returncode", "signal", "timed_out", "seconds"}`` on stdout, where
``returncode`` is the child's exit status (None when a signal ended it). The child's output goes to the
files ``stdout`` and ``stderr``; an exception that escapes ``verify.cli.main`` is printed there as a
traceback (exit 1), as the interpreter would.
"""
import json
import os
import resource
import signal
import sys
import time
import traceback


def _preload() -> None:
    """Import what the commands use, so that children start warm (no threads are started: fork-safe)."""
    import importlib

    import torch

    torch.set_num_threads(1)
    for name in ("verify.cli", "verify.diff", "verify.claims.landscape.evaluate", "verify.report", "verify.claims.softmax.simulate",
                 "verify.claims.landscape.simulate"):
        importlib.import_module(name)
    from verify import documents
    from verify.registry import all_claims

    all_claims()
    documents._validators()


def _child(request: dict) -> None:
    os.chdir(request["cwd"])
    os.environ.update(request["env"])
    for fd, name in ((1, "stdout"), (2, "stderr")):
        handle = os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    mapped = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = mapped + request["address_space"]
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    code = 1
    try:
        from verify.cli import main

        sys.argv = ["verify", *request["argv"]]
        code = main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001  (what the interpreter would print)
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _serve() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child(request)
        timed_out = False
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() - start > request["timeout"]:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                timed_out = True
                break
            time.sleep(0.005)
        reply = {"returncode": os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None,
                 "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                 "timed_out": timed_out, "seconds": round(time.monotonic() - start, 3)}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    _preload()
    print(json.dumps({"ready": True}), flush=True)
    _serve()
