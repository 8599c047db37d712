"""Shared helpers of the Python binding tests (not a test module)."""

import gc
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BINDINGS = os.path.join(REPO, "bindings", "python")

# Let `python3 -m unittest discover -s tests/python` work without PYTHONPATH.
if BINDINGS not in sys.path and not any(
        os.path.isdir(os.path.join(p, "mnas")) for p in sys.path if p):
    sys.path.insert(0, BINDINGS)

import mnas  # noqa: E402

try:
    import numpy  # noqa: F401
    HAVE_NUMPY = True
except ImportError:
    numpy = None
    HAVE_NUMPY = False


def rss_bytes():
    """Resident set size of this process (Linux /proc/self/statm), or None."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def collect():
    gc.collect()
    gc.collect()


def subprocess_env(**extra):
    """Environment for a child interpreter that imports this checkout's mnas."""
    env = dict(os.environ)
    env["PYTHONPATH"] = BINDINGS + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env
