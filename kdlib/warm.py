"""Warm start: run a command (Snakemake, DVC) with a server that has imported torch and kdlib once, and let every
stage job it launches run in a fork of that server instead of importing them again (about 2 s per job on a CPU
host, a fifth of the demo pipeline's job time).

    python -m kdlib.warm snakemake --cores all --resources gpu=1

The command runs as usual with KDLIB_WARM naming the server's socket. A stage script's first statement,
`kdlib.warm.delegate()`, sends its arguments, folder, environment and standard streams there and waits; the
server forks a worker that runs the script in that folder, environment and streams, and the stage exits with the
worker's status. A signal to the stage (Snakemake cancelling a job) is passed on to the worker, and a worker whose
stage has gone is stopped.

A job runs cold, as without the server, wherever the fork could differ from a fresh interpreter: another Python,
another module search path, or a kdlib module edited since the server imported it. This module imports only the
standard library, so that a stage that delegates costs an interpreter start and nothing more.
"""
from __future__ import annotations

import gc
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOCKET = "KDLIB_WARM"
_worker = False  # True in a worker: its stage runs here
_client_started: float | None = None  # in a worker: when the delegating stage process started (uptime seconds)


def delegate() -> None:
    """In a stage script run under a warm server: run it there and exit with its status. Elsewhere (no server, a
    server that refuses, or inside a worker already): return, and the script runs here."""
    path = os.environ.get(SOCKET)
    if not path or _worker:
        return
    request = {"argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ), "python": sys.executable,
               "path": sys.path[1:], "kdlib": _kdlib_file(), "started": process_start()}
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with conn:
        try:
            conn.connect(path)
            frame = _frame(request)
            socket.send_fds(conn, [frame[:4]], [0, 1, 2])  # the streams ride with the length; the message follows
            conn.sendall(frame[4:])
            reply = _read(conn)
        except OSError:  # no server (yet, or any more), or a stream it cannot be handed: run cold
            return
        if reply is None or "pid" not in reply:
            return  # refused (the server says why on its own stderr): run cold
        worker = reply["pid"]

        def forward(signum, _frame):
            try:
                os.kill(worker, signum)
            except ProcessLookupError:
                pass
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, forward)
        done = _read(conn)
    sys.stdout.flush()
    os._exit(done["status"] if done else 1)


def process_start() -> float | None:
    """When this job's process started, in seconds since boot (for the start-up share of kdlib.cli's job log): in a
    worker, the delegating stage's. None where /proc is missing."""
    if _worker:
        return _client_started
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None
    return start_ticks / os.sysconf("SC_CLK_TCK")


def _kdlib_file() -> str:
    import kdlib
    return str(Path(kdlib.__file__).resolve())


def _frame(message: dict) -> bytes:
    data = json.dumps(message).encode()
    return struct.pack("!I", len(data)) + data


def _read(conn: socket.socket) -> dict | None:
    """One length-prefixed JSON message, or None at end of stream."""
    head = _exactly(conn, 4)
    if head is None:
        return None
    data = _exactly(conn, struct.unpack("!I", head)[0])
    return None if data is None else json.loads(data)


def _exactly(conn: socket.socket, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = conn.recv(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# The server side.

def serve(command: list[str]) -> int:
    """Import what the stages import, listen on a private socket, run `command` with KDLIB_WARM naming it, serve
    its jobs until it ends, and return its exit status."""
    if shutil.which(command[0]) is None:
        print(f"error: {command[0]}: command not found", file=sys.stderr)
        return 2
    sys.path = sys.path[1:]  # without `-m`'s folder: what a stage script sees after its own
    search_path = list(sys.path)  # before any import can add to it
    try:
        modules = _preload()
    except Exception as e:  # a stage that cannot import fails in its own job, with its own message
        print(f"kdlib.warm: could not preload the stages' modules ({type(e).__name__}: {e}); jobs start cold",
              file=sys.stderr)
        return subprocess.run(command).returncode
    folder = Path(tempfile.mkdtemp(prefix="kdlib-warm-"))  # private (0700), and short: socket paths are limited
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(folder / "socket"))
    listener.listen(64)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the command and the workers; they report back
    proc = subprocess.Popen(command, env={**os.environ, SOCKET: str(folder / "socket")})
    handlers: set[int] = set()
    told: set[str] = set()
    try:
        while proc.poll() is None:
            if select.select([listener], [], [], 0.5)[0]:
                conn, _ = listener.accept()
                handlers |= _accept(conn, listener, (search_path, modules), told)
            handlers = {pid for pid in handlers if not os.waitpid(pid, os.WNOHANG)[0]}
    finally:
        listener.close()
        shutil.rmtree(folder, ignore_errors=True)
        for pid in handlers:
            os.waitpid(pid, 0)
    return proc.returncode


def _accept(conn: socket.socket, listener: socket.socket, code: tuple[list, dict], told: set[str]) -> set[int]:
    """Start one job (returning its handler's pid), or tell the stage to run cold (saying why once per reason)."""
    fds: list[int] = []
    with conn:
        try:
            message, fds = _receive(conn)
            why = _refusal(message, *code)
            if why is None:
                return {_handle(conn, message, fds, listener)}
        except (OSError, ValueError, KeyError) as e:
            why = f"the job could not be received or started ({e})"
        finally:
            for fd in fds:
                os.close(fd)
        if why not in told:
            told.add(why)
            print(f"kdlib.warm: {why}; such jobs start cold", file=sys.stderr)
        try:
            conn.sendall(_frame({"refused": why}))
        except OSError:
            pass
    return set()


def _preload() -> dict[str, tuple[int, int]]:
    """Import what the stage scripts import (their import statements, read, not run) and every kdlib module a
    stage may pick by name (models, KD methods, dense networks, report studies); return each kdlib file's (mtime,
    size), to refuse jobs once one changes."""
    import ast
    import importlib
    import pkgutil
    import kdlib
    for script in sorted(Path("stages").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text(), str(script))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                importlib.import_module(node.module)
    for info in pkgutil.walk_packages(kdlib.__path__, "kdlib."):
        if info.name.split(".")[1] in ("models", "distill", "dense", "report", "reparam", "export", "engine"):
            importlib.import_module(info.name)
    # PyTorch's FLOP counter spends a second setting itself up on first use (every fuse and export job counts
    # FLOPs): once here, on a layer too small for any thread pool to start before the fork.
    import torch
    from kdlib.counting import count_flops
    count_flops(torch.nn.Linear(2, 2), (2,))
    # What a worker inherits stays out of its garbage collector's passes (they would walk, and copy page by page,
    # every object the server imported).
    gc.collect()
    gc.freeze()
    root = Path(kdlib.__file__).resolve().parent
    files = {}
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve().is_relative_to(root):
            stat = os.stat(file)
            files[file] = (stat.st_mtime_ns, stat.st_size)
    return files


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    head, fds, _, _ = socket.recv_fds(conn, 4, 3)
    if len(head) < 4:
        raise ValueError("short header")
    data = _exactly(conn, struct.unpack("!I", head)[0])
    if data is None or len(fds) != 3:
        raise ValueError("no message or streams")
    return json.loads(data), fds


def _refusal(message: dict, search_path: list[str], modules: dict[str, tuple[int, int]]) -> str | None:
    """Why a job must start cold, or None: it would import other code than this server has."""
    if message["python"] != sys.executable:
        return f"the job runs {message['python']}, the server {sys.executable}"
    if message["path"] != search_path or message["kdlib"] != _kdlib_file():
        return "the job's module search path differs from the server's"
    for file, seen in modules.items():
        try:
            stat = os.stat(file)
        except OSError:
            return f"kdlib: {file} is gone since the server started"
        if (stat.st_mtime_ns, stat.st_size) != seen:
            return f"kdlib: {file} changed since the server started"
    return None


def _handle(conn: socket.socket, message: dict, fds: list[int], listener: socket.socket) -> int:
    """Fork a handler that forks the worker, tells the stage its pid, waits for it and reports its status. The
    server itself never waits on a job."""
    sys.stdout.flush()
    sys.stderr.flush()
    handler = os.fork()
    if handler:
        return handler
    code = 1
    try:
        listener.close()  # SIGINT stays ignored here: the worker's status is what the stage reports
        worker = os.fork()
        if worker == 0:
            conn.close()
            _run_worker(message, fds)  # never returns
        for fd in fds:
            os.close(fd)
        conn.sendall(_frame({"pid": worker}))
        status = _wait(worker, conn)
        code = os.waitstatus_to_exitcode(status)
        conn.sendall(_frame({"status": code if code >= 0 else 128 - code}))
        code = 0
    except OSError:
        pass
    finally:
        os._exit(code)


def _wait(worker: int, conn: socket.socket) -> int:
    """The worker's wait status; if the stage process goes away first (killed), stop the worker."""
    done = os.pidfd_open(worker)
    while True:
        ready = select.select([done, conn], [], [])[0]
        if done in ready:
            return os.waitpid(worker, 0)[1]
        if not conn.recv(1, socket.MSG_PEEK):
            os.kill(worker, signal.SIGTERM)
            return os.waitpid(worker, 0)[1]
        time.sleep(0.05)


def _run_worker(message: dict, fds: list[int]) -> None:
    """Become the stage: its streams, folder, environment, arguments and thread count; run its script as
    __main__ and exit as the interpreter would."""
    global _worker, _client_started
    _worker, _client_started = True, message["started"]
    import runpy
    import traceback
    import torch
    code = 0
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    # Python's own streams on them, buffered as a fresh interpreter's would be (lines only on a terminal).
    sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, encoding="utf-8", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    try:
        os.chdir(message["cwd"])
        os.environ.clear()
        os.environ.update(message["env"])
        os.environ.pop(SOCKET, None)  # what the job starts itself (torchrun's processes) starts cold, never here again
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) > 0:
            torch.set_num_threads(int(threads))  # what a fresh interpreter reads from the job's environment
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        script = message["argv"][0]
        sys.argv = list(message["argv"])
        sys.path = [str(Path(script).resolve().parent), *message["path"]]
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    except BaseException:  # what the interpreter prints for an uncaught exception, and its status
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    return serve(argv)


if __name__ == "__main__":
    # As the module the stages import, not as a second copy named __main__: a worker's flag must be theirs.
    from kdlib.warm import main as warm_main
    sys.exit(warm_main())
