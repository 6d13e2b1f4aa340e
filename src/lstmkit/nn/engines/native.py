"""The scan engine's compiled time loops (``native_scan.cpp``): built once, then loaded.

The Python loops of :mod:`.scan` pay Python's dispatch for ~20 small tensor operations per
time step; the C++ loops run the same recurrence with each step's gate maths in one vectorised
pass per batch row. They are compiled with ``torch.utils.cpp_extension`` (a C++17 compiler and
ninja, which torch's own extension builds need) the first time the scan engine runs on the CPU,
or ahead of time with ``python -m lstmkit.nn.engines.native`` (``make venv`` does this), into
``$LSTMKIT_CACHE`` or ``~/.cache/lstmkit/native``; later processes only load the library.

Where no compiler is found or the build fails, :func:`available` says False once with a warning
naming the cause, and the scan engine runs its Python loops: same results, slower.
``LSTMKIT_NATIVE=0`` turns the compiled loops off without trying.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import warnings
from pathlib import Path

import torch

__all__ = ["SOURCE", "available", "build", "library_path", "main", "set_enabled"]

SOURCE = Path(__file__).with_name("native_scan.cpp")
_log = logging.getLogger("lstmkit")
_state: dict[str, bool | None] = {"loaded": None, "enabled": True}


def _flags() -> list[str]:
    """Compiler flags: AVX2 vector code where torch itself runs AVX2 or AVX-512 kernels."""
    flags = ["-O3", "-fopenmp"]
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
    return flags


def _name() -> str:
    """The build's name: changes with the source, the flags, torch and Python."""
    key = hashlib.sha256()
    key.update(SOURCE.read_bytes())
    key.update(" ".join([*_flags(), torch.__version__, sys.version]).encode())
    return f"lstmkit_native_{key.hexdigest()[:16]}"


def _build_dir() -> Path:
    root = os.environ.get("LSTMKIT_CACHE")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return (base if root else base / "lstmkit") / "native" / _name()


def library_path() -> Path:
    """Where the compiled library is (or will be) for this source, torch and Python."""
    return _build_dir() / f"{_name()}.so"


def build(verbose: bool = False) -> Path:
    """Compile the library if it is not there yet, load it, and return its path.

    Raises RuntimeError or OSError (no compiler, a failed build) with the compiler's message.
    """
    path = library_path()
    if path.exists():
        torch.ops.load_library(str(path))
        return path
    from torch.utils import cpp_extension

    path.parent.mkdir(parents=True, exist_ok=True)
    _log.warning("lstmkit: compiling the scan engine's C++ loops (once per torch version, "
                 "about 10-30 s) into %s", path.parent)
    cpp_extension.load(_name(), [str(SOURCE)], extra_cflags=_flags(),
                       extra_ldflags=["-fopenmp", "-ldl"], build_directory=str(path.parent),
                       is_python_module=False, verbose=verbose)
    return path


def _probe() -> None:
    """Run one tiny step through the library and check it against torch's own LSTM cell.

    It happens inside a user's first forward pass: it must not draw from the global random
    stream, or the masks drawn after it would differ from those of a run without the probe.
    """
    g = torch.Generator().manual_seed(0)
    x, h, c = (torch.randn(2, k, generator=g) for k in (3, 4, 4))
    with torch.random.fork_rng(devices=[]):  # the cell's initialisation draws from it
        cell = torch.nn.LSTMCell(3, 4)
    with torch.no_grad(), torch.autocast("cpu", enabled=False):  # a user's autocast region
        want_h, want_c = cell(x, (h, c))
        xg = (x @ cell.weight_ih.t() + cell.bias_ih + cell.bias_hh).unsqueeze(0)
        got = torch.ops.lstmkit_native.lstm_forward(
            xg, h, c, cell.weight_hh, None, None, None, None, None, None, None, None, None,
            None, [], False)
    if not (torch.allclose(got[0][1], want_h, atol=1e-5)
            and torch.allclose(got[1], want_c, atol=1e-5)):
        raise RuntimeError("the compiled LSTM step disagrees with torch.nn.LSTMCell")


def available() -> bool:
    """Whether the compiled loops can run here; builds or loads them on the first call."""
    if not _state["enabled"]:
        return False
    if _state["loaded"] is None:
        _state["loaded"] = False
        if os.environ.get("LSTMKIT_NATIVE", "1") == "0":
            return False
        try:
            build()
            _probe()
            _state["loaded"] = True
        except (RuntimeError, OSError, ImportError, ValueError) as err:
            warnings.warn(f"lstmkit: the scan engine's compiled loops are not available "
                          f"({err}); running its Python loops instead (same results, slower). "
                          "Set LSTMKIT_NATIVE=0 to skip the attempt.", RuntimeWarning,
                          stacklevel=2)
    return bool(_state["loaded"])


def set_enabled(on: bool) -> bool:
    """Allow or forbid the compiled loops; returns the previous setting."""
    before = bool(_state["enabled"])
    _state["enabled"] = on
    return before


def main(argv: list[str] | None = None) -> int:
    """Build the library ahead of time (``python -m lstmkit.nn.engines.native [-v]``)."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(format="%(message)s")
    try:
        built = build(verbose="-v" in argv)
        _probe()
    except (RuntimeError, OSError, ImportError, ValueError) as err:
        _log.error("lstmkit: the scan engine's compiled loops did not build (%s); the engine "
                   "will run its Python loops (same results, slower).", err)
        return 1
    _log.warning("lstmkit: compiled scan loops ready at %s", built)
    return 0


if __name__ == "__main__":
    sys.exit(main())
