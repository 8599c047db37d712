"""mnas: Python bindings (ctypes) for libmnas, meta neural architecture search.

A toy-regression experiment (MAML on the paper's four function families)::

    import mnas
    with mnas.Context() as ctx:
        learner = mnas.Learner(ctx, "maml", meta_batch=25, threads=2, seed=1)
        learner.train(2000, progress=True)
        test = mnas.regression_test_set(ctx, seed=1000003, n_per_family=1000)
        print(learner.evaluate(test))

The shared library is found at import (``MNAS_LIBRARY``, the build tree, the
system; see ``mnas.load``) and must have major version ``EXPECTED_MAJOR``.
Errors are ``mnas.Error`` subclasses, one per libmnas status. See
docs/python.md for the whole surface.
"""

import os as _os

from ._lib import EXPECTED_MAJOR, load, loaded_path
from .errors import (ArgumentTypeError, ClosedHandleError, Error, FileError, FormatError,
                     InternalError, InvalidArgument, LibraryError, LibraryNotFoundError,
                     LibraryVersionError, MismatchError, NumericError, OutOfMemory, ShapeError,
                     StaleTensor, StateError, Unsupported)
from .core import (LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_WARN, Context, Rng, status_str, version,
                   version_number)
from .tensors import Tensor, active_tape, tensor, zeros
from .autodiff import Tape, gradcheck
from .nn import MLP, SGD, Adam, Module, Optimizer, Params
from .data import (FAMILIES, FewShotSampler, ImageDataset, Task, TaskSet, accuracy, family_name,
                   mean_ci95, regression_task, regression_test_set)
from .nas import Cell, Child, Genotype, SearchSpace, Supernet
from .figures import Figure, color, plot_regression
from .meta import (Controller, Evaluation, Learner, METHODS, Modulator, TaskEncoder, inner_loop,
                   method_name, results_table)

__version__ = "0.1.0"

__all__ = [
    "EXPECTED_MAJOR", "load", "loaded_path", "version", "version_number", "status_str",
    "Error", "InvalidArgument", "ArgumentTypeError", "ShapeError", "OutOfMemory", "StaleTensor",
    "NumericError", "FileError", "FormatError", "StateError", "ClosedHandleError", "Unsupported",
    "InternalError", "MismatchError", "LibraryError", "LibraryNotFoundError",
    "LibraryVersionError",
    "Context", "Rng", "LOG_ERROR", "LOG_WARN", "LOG_INFO", "LOG_DEBUG",
    "Tensor", "tensor", "zeros", "active_tape", "Tape", "gradcheck",
    "Params", "Optimizer", "Adam", "SGD", "Module", "MLP",
    "SearchSpace", "Cell", "Supernet", "Genotype", "Child",
    "Task", "TaskSet", "FAMILIES", "family_name", "regression_task", "regression_test_set",
    "mean_ci95", "ImageDataset", "FewShotSampler", "accuracy", "Figure", "color", "plot_regression",
    "TaskEncoder", "Controller", "Modulator",
    "Learner", "Evaluation", "METHODS", "method_name", "inner_loop", "results_table",
]


def _load_at_import():
    # The version check happens here, at import. A library that is found but
    # has the wrong major version (or lacks a function) fails the import; when
    # none is found, the import succeeds so that mnas.load(path) can be called,
    # and the first use of the library raises LibraryNotFoundError.
    try:
        load()
    except LibraryNotFoundError:
        if _os.environ.get("MNAS_LIBRARY"):
            raise


_load_at_import()
