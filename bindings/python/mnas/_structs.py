"""The option structs of the C API, mirrored field for field.

This is the one place where the package mirrors C structs: libmnas passes
options as structs whose first field is ``size_t struct_size`` (see
docs/api.md), so there is no other way to call those functions. The rules
that keep it safe:

* the field order and types here are exactly those of the headers (checked
  by tests/python/test_layout.py, against the C compiler when one is
  available and against the LP64 layout otherwise);
* ``struct_size`` is always ``ctypes.sizeof`` of the Python struct, so a
  newer library that grew the struct reads only what we wrote and gives
  the fields we do not know their defaults;
* every struct starts from the values of the header's ``..._INIT`` macro
  (``new()`` below).

When a header appends a field, append it here (and to its defaults).
"""

import ctypes
from ctypes import c_double, c_int, c_int64, c_size_t, c_uint, c_uint64, c_void_p


class _Options(ctypes.Structure):
    _defaults = ()

    @classmethod
    def new(cls, **fields):
        """A struct with the header's ..._INIT values, then ``fields`` set."""
        s = cls()
        s.struct_size = ctypes.sizeof(cls)
        for name, value in cls._defaults:
            setattr(s, name, value)
        for name, value in fields.items():
            if name == "struct_size" or not hasattr(s, name):
                raise AttributeError("%s has no option %r" % (cls.__name__, name))
            setattr(s, name, value)
        return s


class CtxOptions(_Options):
    """mnas_ctx_options (core.h)."""
    _fields_ = [
        ("struct_size", c_size_t),
        ("alloc", c_void_p),       # mnas_alloc_fn
        ("free", c_void_p),        # mnas_free_fn
        ("alloc_user", c_void_p),
        ("seed", c_uint64),
        ("log", c_void_p),         # mnas_log_fn
        ("log_user", c_void_p),
        ("log_level", c_int),
    ]
    # MNAS_CTX_OPTIONS_INIT
    _defaults = (("seed", 0), ("log_level", 1))


class GradcheckOptions(_Options):
    """mnas_gradcheck_options (autodiff.h)."""
    _fields_ = [
        ("struct_size", c_size_t),
        ("order", c_int),
        ("eps", c_double),
        ("atol", c_double),
        ("rtol", c_double),
        ("seed", c_uint64),
        ("record_last", c_int),
    ]
    # MNAS_GRADCHECK_OPTIONS_INIT
    _defaults = (("order", 1), ("eps", 0.0), ("atol", 0.0), ("rtol", 0.0), ("seed", 1), ("record_last", 0))


class OptimOptions(_Options):
    """mnas_optim_options (nn.h)."""
    _fields_ = [
        ("struct_size", c_size_t),
        ("kind", c_int),           # mnas_optim_kind
        ("lr", c_double),
        ("momentum", c_double),
        ("beta1", c_double),
        ("beta2", c_double),
        ("eps", c_double),
        ("clip_norm", c_double),
    ]
    # MNAS_OPTIM_OPTIONS_INIT
    _defaults = (("kind", 1), ("lr", 1e-3), ("momentum", 0.0), ("beta1", 0.9),
                 ("beta2", 0.999), ("eps", 1e-8), ("clip_norm", 0.0))


class RegressionOptions(_Options):
    """mnas_regression_options (data.h)."""
    _fields_ = [
        ("struct_size", c_size_t),
        ("k_shot", c_int),
        ("k_query", c_int),
        ("families", c_uint),
    ]
    # MNAS_REGRESSION_OPTIONS_INIT
    _defaults = (("k_shot", 10), ("k_query", 10), ("families", 0xF))


class InnerOptions(_Options):
    """mnas_inner_options (meta.h)."""
    _fields_ = [
        ("struct_size", c_size_t),
        ("steps", c_int),
        ("lr", c_double),
        ("mode", c_int),           # mnas_inner_mode
        ("rates", c_void_p),       # mnas_tensor *const * (learned rates; the caller keeps them alive)
    ]
    # MNAS_INNER_OPTIONS_INIT
    _defaults = (("steps", 5), ("lr", 0.001), ("mode", 0))


class LearnerOptions(_Options):
    """mnas_learner_options (meta.h)."""
    _fields_ = [
        ("struct_size", c_size_t),
        ("method", c_int),         # mnas_method
        ("meta_batch", c_int),
        ("inner_steps", c_int),
        ("inner_lr", c_double),
        ("outer_lr", c_double),
        ("inner_mode", c_int),     # mnas_inner_mode
        ("threads", c_int),
        ("seed", c_uint64),
        ("clip_norm", c_double),
        ("hidden", c_int),
        ("layers", c_int),
        ("in_features", c_int),
        ("out_features", c_int),
        # M-NAS, M-NAS-Shared, M-NAS-NM (Eq. (9))
        ("arch_lr", c_double),
        ("beta", c_double),
        ("path_dropout", c_double),
        ("nodes", c_int),
        ("z_dim", c_int),
        ("f_dim", c_int),
        ("controller_hidden", c_int),
        ("encoder", c_int),        # mnas_rnn_kind
        ("modulation", c_int),     # mnas_modulation
        ("modulator_bias", c_double),
        # few-shot image classification (classes > 0)
        ("classes", c_int),
        ("in_channels", c_int),
        ("image_size", c_int),
        ("filters", c_int),
        ("channels", c_int),
        ("modulator_form", c_int),  # mnas_modulator_form
        ("sample_ops", c_int64),   # 0: full supernet; k: Gumbel top-k ops per edge
        ("stem_stride", c_int),    # conv supernet stem: 1, 2 or 4
        ("inner_lr_mode", c_int),  # mnas_inner_lr_mode: fixed, per-tensor, per-element
        ("inner_lr_max", c_double),  # 0: unbounded learned rates; else their smooth bound
        ("encoder_input_scale", c_double),  # 0: unscaled; (0, 1]: the task encoder's input scale
    ]
    # MNAS_LEARNER_OPTIONS_INIT
    _defaults = (("method", 0), ("meta_batch", 25), ("inner_steps", 5), ("inner_lr", 0.001),
                 ("outer_lr", 0.001), ("inner_mode", 0), ("threads", 1), ("seed", 0),
                 ("clip_norm", 0.0), ("hidden", 50), ("layers", 5), ("in_features", 1),
                 ("out_features", 1), ("arch_lr", 1e-4), ("beta", 0.01), ("path_dropout", 0.1),
                 ("nodes", 3), ("z_dim", 32), ("f_dim", 32), ("controller_hidden", 64),
                 ("encoder", 0), ("modulation", 0), ("modulator_bias", 3.0), ("classes", 0),
                 ("in_channels", 1), ("image_size", 28), ("filters", 32), ("channels", 16),
                 ("modulator_form", 0),
                 ("sample_ops", 0), ("stem_stride", 1), ("inner_lr_mode", 0),
                 ("inner_lr_max", 0.0), ("encoder_input_scale", 0.0))


class ImageLoadOptions(_Options):
    """mnas_image_load_options (data.h)."""
    _fields_ = [
        ("struct_size", c_size_t),
        ("channels", c_int),
        ("height", c_int),
        ("width", c_int),
        ("resize", c_int),         # mnas_image_resize
        ("alpha", c_int),          # mnas_image_alpha
        ("cache_path", c_void_p),  # const char * (the caller keeps the bytes alive)
    ]
    # MNAS_IMAGE_LOAD_OPTIONS_INIT
    _defaults = (("channels", 0), ("height", 0), ("width", 0), ("resize", 0), ("alpha", 0))


class ImageSplitOptions(_Options):
    """mnas_image_split_options (data.h)."""
    _fields_ = [
        ("struct_size", c_size_t),
        ("train_fraction", c_double),
        ("val_fraction", c_double),
        ("seed", c_uint64),
        ("train_list", c_void_p),  # const char *
        ("val_list", c_void_p),
        ("test_list", c_void_p),
    ]
    # MNAS_IMAGE_SPLIT_OPTIONS_INIT
    _defaults = (("train_fraction", 0.64), ("val_fraction", 0.16), ("seed", 0))


class FewshotOptions(_Options):
    """mnas_fewshot_options (data.h)."""
    _fields_ = [
        ("struct_size", c_size_t),
        ("way", c_int),
        ("shot", c_int),
        ("query", c_int),
    ]
    # MNAS_FEWSHOT_OPTIONS_INIT
    _defaults = (("way", 5), ("shot", 1), ("query", 15))


# C struct name -> Python mirror (for the layout test and for readers).
ALL = {
    "mnas_ctx_options": CtxOptions,
    "mnas_gradcheck_options": GradcheckOptions,
    "mnas_optim_options": OptimOptions,
    "mnas_regression_options": RegressionOptions,
    "mnas_image_load_options": ImageLoadOptions,
    "mnas_image_split_options": ImageSplitOptions,
    "mnas_fewshot_options": FewshotOptions,
    "mnas_inner_options": InnerOptions,
    "mnas_learner_options": LearnerOptions,
}
