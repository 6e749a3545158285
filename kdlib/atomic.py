"""Atomic writes: write a temporary file beside the target, then rename it into place.

A crash or kill never leaves a half-written file under the final name.
"""
import os
import tempfile
from pathlib import Path


def _atomic(path: Path, write) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:  # read-only, a full disk, a name too long: the error names the file meant
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_stream(path: Path, write) -> None:
    """`write(f)` fills the file as it goes (a file too large to build in memory first)."""
    _atomic(path, write)


def atomic_write_text(path: Path, text: str) -> None:
    _atomic(path, lambda f: f.write(text.encode()))


def atomic_torch_save(obj, path: Path) -> None:
    import torch  # here: writing text (kdlib.pipeline's recipes) needs no torch

    _atomic(path, lambda f: torch.save(obj, f))
