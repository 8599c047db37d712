"""Type aliases of the public annotations (typing only; nothing here is
needed at run time)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence, Union

if TYPE_CHECKING:
    from .nn import Params
    from .tensors import Tensor

#: A shape: one int (1-D) or a sequence of 0 to 4 ints.
ShapeLike = Union[int, Sequence[int]]
#: A file path as ``open`` takes it.
PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
#: The weights a forward takes: a parameter set, or its tensors in order
#: (persistent, or tape tensors an inner step produced).
WeightsLike = Union["Params", Sequence["Tensor"]]
