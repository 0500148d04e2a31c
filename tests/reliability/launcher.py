"""A warm launcher for the reliability trials: imports the ``docrerank`` CLI once, then forks a fresh process
per command, which runs the real ``main()`` and is SIGKILLed by the test like any other process.

Starting ``docrerank`` costs seconds of imports on a busy 2-core machine, several times the run a trial
kills; forking from an interpreter that has done them once keeps the suite's trials within its time budget.
The launcher starts no threads (so forking is safe), reads one JSON job a line on stdin and answers the
child's pid; when a child ends, its exit status goes to ``STATUS_DIR/<pid>`` (``-9`` for SIGKILL).

FAULT INJECTION (optional, per job): ``crashpoint: [PATTERN, NTH, WHEN, SIGNAL_FILE]`` freezes the child at
the NTH ``os.replace`` (the rename that ends every atomic write) onto a path matching PATTERN, ``before``
or ``after`` the rename: it writes SIGNAL_FILE and sleeps, and the test SIGKILLs it there. The command's
code is unchanged; this only lets a kill land exactly inside a shard's write (its kept file renamed but not
its rejected file, or both but not its marker), which polling cannot hit reliably.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time


def _install_crashpoint(pattern: str, nth: int, when: str, signal_file: str) -> None:
    real_replace = os.replace
    seen = 0

    def freeze() -> None:
        with open(signal_file, "w") as out:
            out.write(f"{pattern} #{nth} {when}\n")
        time.sleep(3600)  # the test SIGKILLs the process here

    def replace(src, dst, *args, **kwargs):
        nonlocal seen
        hit = bool(re.search(pattern, os.fspath(dst)))
        seen += hit
        if hit and seen == nth and when == "before":
            freeze()
        real_replace(src, dst, *args, **kwargs)
        if hit and seen == nth and when == "after":
            freeze()

    os.replace = replace


def _run_child(job: dict, cli_main) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        target = os.open(job[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    os.environ.update(job.get("env", {}))
    if job.get("crashpoint"):
        pattern, nth, when, signal_file = job["crashpoint"]
        _install_crashpoint(pattern, int(nth), when, signal_file)
    sys.argv = ["docrerank", *job["args"]]
    code = 0
    try:
        cli_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - report like an uncaught exception would
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    status_dir = sys.argv[1]
    from docrerank.cli.app import main as cli_main

    def reap(signum, frame) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            path = os.path.join(status_dir, str(pid))
            with open(path + ".tmp", "w") as out:
                out.write(str(os.waitstatus_to_exitcode(status)))
            os.replace(path + ".tmp", path)

    signal.signal(signal.SIGCHLD, reap)
    print("ready", flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _run_child(job, cli_main)
        print(pid, flush=True)


if __name__ == "__main__":
    main()
