"""Finding and loading libmnas, checking its version, and the one table of
the C functions the package calls (name, argument types, result type).

Where the library comes from, first match wins:

1. the path given to ``mnas.load(path)``;
2. the environment variable ``MNAS_LIBRARY`` (a file path);
3. the build tree this package sits in (``<repo>/build/default``, then
   ``<repo>/build/ci``, then any other ``<repo>/build/*``), when the package
   is used from a source checkout;
4. the system: ``ctypes.util.find_library("mnas")``, then ``libmnas.so.<major>``.

The package is written for one major version of the library (the ABI only
grows within a major version); loading another one fails with
``LibraryVersionError``, and so does a library that lacks a function of the
table below (it names the function).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
from ctypes import (CFUNCTYPE, POINTER, c_char_p, c_double, c_int, c_int32, c_int64,
                    c_size_t, c_uint, c_uint64, c_void_p)
from typing import Optional

from . import _structs as S
from .errors import LibraryNotFoundError, LibraryVersionError
from ._types import PathLike

EXPECTED_MAJOR = 0

# ---- callback types (C function pointer types of the headers) -------------

LOG_FN = CFUNCTYPE(None, c_void_p, c_int, c_char_p)
TASK_SOURCE_FN = CFUNCTYPE(c_void_p, c_void_p, c_uint64)
PROGRESS_FN = CFUNCTYPE(c_int, c_void_p, c_int64, c_int64, c_double)
LOSS_FN = CFUNCTYPE(c_void_p, c_void_p, POINTER(c_void_p), POINTER(c_void_p), c_void_p)
GRADCHECK_FN = CFUNCTYPE(c_void_p, c_void_p, POINTER(c_void_p), c_void_p)

# ---- the table ------------------------------------------------------------

H = c_void_p                 # every opaque handle (mnas_ctx *, mnas_tensor *, ...)
HP = POINTER(c_void_p)       # arrays of handles (mnas_tensor *const *)
I64P = POINTER(c_int64)      # shapes and indices
DATA = c_void_p              # mnas_real * (float32 buffers, passed by address)
DP = POINTER(c_double)
ST = c_int                   # mnas_status

_BINARY = ("add", "sub", "mul", "div", "mask_mul")
_UNARY = ("neg", "relu", "sigmoid", "tanh", "exp", "log", "sqrt", "square",
          "transpose", "sum", "mean", "softmax", "log_softmax")

FUNCTIONS = [
    # core.h
    ("mnas_status_str", [c_int], c_char_p),
    ("mnas_version_number", [], c_int),
    ("mnas_version_string", [], c_char_p),
    ("mnas_ctx_create", [HP, POINTER(S.CtxOptions)], ST),
    ("mnas_ctx_free", [H], None),
    ("mnas_ctx_last_error", [H], c_char_p),
    ("mnas_ctx_clear_error", [H], None),
    ("mnas_ctx_live_allocations", [H], c_int64),
    ("mnas_ctx_live_tensors", [H], c_int64),
    ("mnas_ctx_log", [H, c_int, c_char_p], None),
    ("mnas_ctx_seed", [H, c_uint64], None),
    ("mnas_ctx_rng", [H], H),
    ("mnas_rng_create", [H, c_uint64, c_uint64], H),
    ("mnas_rng_free", [H], None),
    ("mnas_rng_seed", [H, c_uint64, c_uint64], None),
    ("mnas_rng_u64", [H], c_uint64),
    ("mnas_rng_below", [H, c_uint64], c_uint64),
    ("mnas_rng_uniform", [H], c_double),
    ("mnas_rng_normal", [H], c_double),
    ("mnas_rng_get_state", [H, POINTER(c_uint64)], None),
    ("mnas_rng_set_state", [H, POINTER(c_uint64)], ST),
    # tensor.h
    ("mnas_tensor_zeros", [H, c_int, I64P], H),
    ("mnas_tensor_from_data", [H, c_int, I64P, DATA], H),
    ("mnas_tensor_wrap", [H, c_int, I64P, DATA], H),
    ("mnas_tensor_randn", [H, c_int, I64P, c_double, c_double], H),
    ("mnas_tensor_rand", [H, c_int, I64P, c_double, c_double], H),
    ("mnas_tensor_randn_rng", [H, H, c_int, I64P, c_double, c_double], H),
    ("mnas_tensor_rand_rng", [H, H, c_int, I64P, c_double, c_double], H),
    ("mnas_tensor_copy", [H], H),
    ("mnas_tensor_assign", [H, H], ST),
    ("mnas_tensor_free", [H], None),
    ("mnas_tensor_reshape", [H, c_int, I64P], ST),
    ("mnas_tensor_ndim", [H], c_int),
    ("mnas_tensor_dim", [H, c_int], c_int64),
    ("mnas_tensor_size", [H], c_int64),
    ("mnas_tensor_shape", [H, I64P], ST),
    ("mnas_tensor_data", [H], DATA),
    ("mnas_tensor_cdata", [H], DATA),
    ("mnas_tensor_item", [H], c_double),
    ("mnas_tensor_ctx", [H], H),
    ("mnas_tensor_is_tape_owned", [H], c_int),
    ("mnas_tensor_is_valid", [H], c_int),
    ("mnas_tensor_set_requires_grad", [H, c_int], ST),
    ("mnas_tensor_requires_grad", [H], c_int),
    # autodiff.h: the tape
    ("mnas_tape_create", [H, HP], ST),
    ("mnas_tape_free", [H], None),
    ("mnas_tape_reset", [H], None),
    ("mnas_tape_ctx", [H], H),
    ("mnas_tape_last_error", [H], c_char_p),
    ("mnas_tape_status", [H], ST),
    ("mnas_tape_clear_error", [H], None),
    ("mnas_tape_num_nodes", [H], c_size_t),
    ("mnas_tape_bytes_reserved", [H], c_size_t),
    ("mnas_tape_no_grad_begin", [H], None),
    ("mnas_tape_no_grad_end", [H], None),
    ("mnas_tape_is_recording", [H], c_int),
    ("mnas_tape_tensor", [H, c_int, I64P, DATA], H),
    ("mnas_detach", [H, H], H),
    ("mnas_grad", [H, H, c_size_t, HP, HP, c_int], ST),
    # autodiff.h: ops
] + [("mnas_" + n, [H, H, H], H) for n in _BINARY] + [
    ("mnas_" + n, [H, H], H) for n in _UNARY] + [
    ("mnas_axpy", [H, c_double, H, H], H),
    ("mnas_mix", [H, H, c_size_t, HP, I64P], H),
    ("mnas_scale", [H, H, c_double], H),
    ("mnas_add_scalar", [H, H, c_double], H),
    ("mnas_pow", [H, H, c_double], H),
    ("mnas_matmul", [H, H, H, c_int, c_int], H),
    ("mnas_linear", [H, H, H, H], H),
    ("mnas_sum_axis", [H, H, c_int, c_int], H),
    ("mnas_mean_axis", [H, H, c_int, c_int], H),
    ("mnas_sum_to", [H, H, c_int, I64P], H),
    ("mnas_broadcast_to", [H, H, c_int, I64P], H),
    ("mnas_reshape", [H, H, c_int, I64P], H),
    ("mnas_concat", [H, c_size_t, HP, c_int], H),
    ("mnas_slice", [H, H, c_int, c_int64, c_int64], H),
    ("mnas_gather_rows", [H, H, c_size_t, I64P], H),
    ("mnas_scatter_add_rows", [H, H, c_size_t, I64P, c_int64], H),
    ("mnas_pad_axis", [H, H, c_int, c_int64, c_int64], H),
    ("mnas_cross_entropy", [H, H, c_size_t, POINTER(c_int32)], H),
    ("mnas_mse", [H, H, H], H),
    ("mnas_batch_norm", [H, H, H, H, c_double], H),
    ("mnas_unfold", [H, H, c_int, c_int, c_int, c_int, c_int], H),
    ("mnas_fold", [H, H, c_int64, c_int64, c_int64, c_int, c_int, c_int, c_int, c_int], H),
    ("mnas_conv2d", [H, H, H, H, c_int, c_int, c_int, c_int], H),
    ("mnas_max_pool2d", [H, H, c_int, c_int, c_int], H),
    ("mnas_avg_pool2d", [H, H, c_int, c_int, c_int], H),
    ("mnas_global_avg_pool", [H, H], H),
    ("mnas_gradcheck", [H, GRADCHECK_FN, c_void_p, c_size_t, HP,
                        POINTER(S.GradcheckOptions), DP], ST),
    # nn.h
    ("mnas_params_create", [H], H),
    ("mnas_params_free", [H], None),
    ("mnas_params_add", [H, c_char_p, c_int, I64P, c_int, c_double, c_int], c_int),
    ("mnas_params_init", [H, H], ST),
    ("mnas_params_count", [H], c_size_t),
    ("mnas_params_numel", [H], c_int64),
    ("mnas_params_tensors", [H], c_void_p),
    ("mnas_params_get", [H, c_size_t], H),
    ("mnas_params_grad", [H, c_size_t], H),
    ("mnas_params_name", [H, c_size_t], c_char_p),
    ("mnas_params_group", [H, c_size_t], c_int),
    ("mnas_params_find", [H, c_char_p], c_int),
    ("mnas_params_zero_grad", [H], None),
    ("mnas_params_accumulate_grad", [H, HP, c_double], ST),
    ("mnas_params_copy_values", [H, H], ST),
    ("mnas_params_copy_matching", [H, H], c_int),
    ("mnas_params_grad_norm", [H], c_double),
    ("mnas_optim_create", [H, POINTER(S.OptimOptions)], H),
    ("mnas_optim_free", [H], None),
    ("mnas_optim_set_group_lr", [H, c_int, c_double], ST),
    ("mnas_optim_step", [H], ST),
    ("mnas_optim_steps", [H], c_int64),
    ("mnas_mlp_create", [H, c_int, I64P, c_uint], H),
    ("mnas_mlp_free", [H], None),
    ("mnas_mlp_add_params", [H, H, c_char_p, c_int], c_int),
    ("mnas_mlp_num_params", [H], c_size_t),
    ("mnas_mlp_forward", [H, H, H, c_void_p], H),
    ("mnas_convnet_create", [H, c_int64, c_int64, c_int64, c_int64, c_int64], H),
    ("mnas_convnet_free", [H], None),
    ("mnas_convnet_add_params", [H, H, c_char_p, c_int], c_int),
    ("mnas_convnet_num_params", [H], c_size_t),
    ("mnas_convnet_filters", [H], c_int64),
    ("mnas_convnet_forward", [H, H, H, c_void_p], H),
    # data.h
    ("mnas_task_create", [H, H, H, H, H, c_int], H),
    ("mnas_task_free", [H], None),
    ("mnas_task_support_x", [H], H),
    ("mnas_task_support_y", [H], H),
    ("mnas_task_query_x", [H], H),
    ("mnas_task_query_y", [H], H),
    ("mnas_task_family", [H], c_int),
    ("mnas_task_params", [H, DP], c_int),
    ("mnas_regression_family_name", [c_int], c_char_p),
    ("mnas_regression_task", [H, POINTER(S.RegressionOptions), c_uint64, c_uint64, c_int], H),
    ("mnas_regression_eval", [H, c_double], c_double),
    ("mnas_regression_test_set", [H, POINTER(S.RegressionOptions), c_uint64, c_size_t], H),
    ("mnas_task_set_create", [H], H),
    ("mnas_task_set_add", [H, H], ST),
    ("mnas_task_set_size", [H], c_size_t),
    ("mnas_task_set_get", [H, c_size_t], H),
    ("mnas_task_set_free", [H], None),
    ("mnas_mean_ci95", [DP, c_size_t, DP, DP], ST),
    ("mnas_image_dataset_load_folder", [H, c_char_p, POINTER(S.ImageLoadOptions)], H),
    ("mnas_image_dataset_load_idx", [H, c_char_p, c_char_p, POINTER(S.ImageLoadOptions)], H),
    ("mnas_image_dataset_create", [H, c_size_t, POINTER(c_size_t), POINTER(c_char_p), c_int, c_int,
                                   c_int, DATA], H),
    ("mnas_image_dataset_free", [H], None),
    ("mnas_image_dataset_num_classes", [H], c_size_t),
    ("mnas_image_dataset_num_images", [H], c_size_t),
    ("mnas_image_dataset_class_size", [H, c_size_t], c_size_t),
    ("mnas_image_dataset_class_name", [H, c_size_t], c_char_p),
    ("mnas_image_dataset_find_class", [H, c_char_p], c_int64),
    ("mnas_image_dataset_shape", [H, I64P], ST),
    ("mnas_image_dataset_copy_image", [H, c_size_t, c_size_t, DATA, c_size_t], ST),
    ("mnas_image_dataset_from_cache", [H], c_int),
    ("mnas_image_dataset_subset", [H, POINTER(c_size_t), c_size_t], H),
    ("mnas_image_dataset_split", [H, POINTER(S.ImageSplitOptions), HP, HP, HP], ST),
    ("mnas_fewshot_sampler_create", [H, HP, c_size_t, POINTER(S.FewshotOptions)], H),
    ("mnas_fewshot_sampler_free", [H], None),
    ("mnas_fewshot_sampler_num_datasets", [H], c_size_t),
    ("mnas_fewshot_sampler_sizes", [H, POINTER(c_int), POINTER(c_int), POINTER(c_int)], ST),
    ("mnas_fewshot_task", [H, H, c_uint64, c_uint64], H),
    ("mnas_fewshot_test_set", [H, H, c_uint64, c_size_t], H),
    ("mnas_accuracy", [H, H, DP], ST),
    # nas.h
    ("mnas_search_space_create", [H], H),
    ("mnas_search_space_free", [H], None),
    ("mnas_search_space_num_ops", [H], c_size_t),
    ("mnas_search_space_op_name", [H, c_size_t], c_char_p),
    ("mnas_search_space_find_op", [H, c_char_p], c_int),
    ("mnas_search_space_op_is_zero", [H, c_size_t], c_int),
    ("mnas_search_space_mlp", [H], H),
    ("mnas_search_space_darts", [H], H),
    ("mnas_search_space_add_op_params", [H, c_size_t, c_int64, c_int, H, c_char_p, c_int], c_int),
    ("mnas_search_space_op_num_params", [H, c_size_t, c_int64, c_int], c_int),
    ("mnas_search_space_op_forward", [H, c_size_t, H, H, c_void_p, c_int], H),
    ("mnas_cell_create_mlp", [H, c_int, c_int64], H),
    ("mnas_cell_create_conv", [H, c_int, c_int64, c_int64, c_int64, c_int, c_int], H),
    ("mnas_cell_is_conv", [H], c_int),
    ("mnas_cell_is_reduction", [H], c_int),
    ("mnas_cell_out_width", [H], c_int64),
    ("mnas_cell_free", [H], None),
    ("mnas_cell_num_nodes", [H], c_int),
    ("mnas_cell_num_edges", [H], c_size_t),
    ("mnas_cell_space", [H], H),
    ("mnas_cell_edge", [H, c_int, c_int], c_int),
    ("mnas_cell_add_params", [H, H, c_char_p, c_int], c_int),
    ("mnas_cell_num_params", [H], c_size_t),
    ("mnas_cell_forward", [H, H, H, H, c_void_p, H], H),
    ("mnas_supernet_create_mlp", [H, c_int64, c_int64, c_int, c_int64], H),
    ("mnas_supernet_free", [H], None),
    ("mnas_supernet_cell", [H], H),
    ("mnas_supernet_add_params", [H, H, c_char_p, c_int], c_int),
    ("mnas_supernet_num_params", [H], c_size_t),
    ("mnas_supernet_forward", [H, H, H, c_void_p, H], H),
    ("mnas_supernet_create_conv", [H, c_int64, c_int64, c_int, c_int64], H),
    ("mnas_supernet_is_conv", [H], c_int),
    ("mnas_supernet_set_stem_stride", [H, c_int], c_int),
    ("mnas_supernet_stem_stride", [H], c_int),
    ("mnas_supernet_num_cells", [H], c_int),
    ("mnas_supernet_cell_at", [H, c_int], H),
    ("mnas_supernet_alpha_rows", [H], c_size_t),
    ("mnas_genotype_derive", [H, H], H),
    ("mnas_genotype_derive_supernet", [H, H], H),
    ("mnas_genotype_make_pair", [H, H], H),
    ("mnas_genotype_part", [H, c_int], H),
    ("mnas_genotype_num_cells", [H], c_int),
    ("mnas_genotype_onehot_supernet", [H, H, DATA], ST),
    ("mnas_genotype_parse", [H, H, c_char_p], H),
    ("mnas_genotype_free", [H], None),
    ("mnas_genotype_copy", [H], H),
    ("mnas_genotype_num_nodes", [H], c_int),
    ("mnas_genotype_input", [H, c_int, c_int], c_int),
    ("mnas_genotype_op", [H, c_int, c_int], c_int),
    ("mnas_genotype_equal", [H, H], c_int),
    ("mnas_genotype_to_string", [H, c_void_p, c_size_t], c_int64),
    ("mnas_genotype_to_dot", [H, c_char_p, c_void_p, c_size_t], c_int64),
    ("mnas_genotype_onehot", [H, H, DATA], ST),
    ("mnas_child_create", [H, H], H),
    ("mnas_child_free", [H], None),
    ("mnas_child_add_params", [H, H, c_char_p, c_int], c_int),
    ("mnas_child_num_params", [H], c_size_t),
    ("mnas_child_forward", [H, H, H, c_void_p], H),
    # io.h
    ("mnas_figure_create", [H, c_int, c_int, c_int, c_int], H),
    ("mnas_figure_free", [H], None),
    ("mnas_figure_panels", [H], c_int),
    ("mnas_figure_color", [c_uint], ctypes.c_uint32),
    ("mnas_figure_text_scale", [H, c_int], ST),
    ("mnas_figure_panel_range", [H, c_int, c_double, c_double, c_double, c_double], ST),
    ("mnas_figure_panel_get_range", [H, c_int, DP], ST),
    ("mnas_figure_line", [H, c_int, DP, DP, c_size_t, ctypes.c_uint32, c_double, c_char_p], ST),
    ("mnas_figure_points", [H, c_int, DP, DP, c_size_t, ctypes.c_uint32, c_double, c_char_p], ST),
    ("mnas_figure_title", [H, c_int, c_char_p], ST),
    ("mnas_figure_axis_labels", [H, c_int, c_char_p, c_char_p], ST),
    ("mnas_figure_legend", [H, c_int, c_int], ST),
    ("mnas_figure_panel_clear", [H, c_int], ST),
    ("mnas_figure_plot_area", [H, c_int, POINTER(c_int), POINTER(c_int), POINTER(c_int),
                               POINTER(c_int)], ST),
    ("mnas_figure_data_to_pixel", [H, c_int, c_double, c_double, DP, DP], ST),
    ("mnas_figure_pixels", [H, HP, POINTER(c_int), POINTER(c_int)], ST),
    ("mnas_figure_save_png", [H, c_char_p], ST),
    # meta.h
    ("mnas_inner_loop", [H, LOSS_FN, c_void_p, c_size_t, HP, c_size_t, HP,
                         POINTER(S.InnerOptions), HP], ST),
    ("mnas_task_encoder_create", [H, c_int64, c_int64, c_int64, c_int64, c_int], H),
    ("mnas_task_encoder_free", [H], None),
    ("mnas_task_encoder_z_dim", [H], c_int64),
    ("mnas_task_encoder_add_params", [H, H, c_char_p, c_int], c_int),
    ("mnas_task_encoder_num_params", [H], c_size_t),
    ("mnas_task_encoder_forward", [H, H, H, H, c_void_p, I64P, HP, HP], ST),
    ("mnas_controller_create", [H, c_int64, c_int64, c_int64, c_int64], H),
    ("mnas_controller_free", [H], None),
    ("mnas_controller_add_params", [H, H, c_char_p, c_int], c_int),
    ("mnas_controller_num_params", [H], c_size_t),
    ("mnas_controller_set_temperature", [H, c_double], ST),
    ("mnas_controller_temperature", [H], c_double),
    ("mnas_controller_forward", [H, H, H, c_void_p], H),
    ("mnas_modulator_create", [H, c_int64, c_size_t, HP, c_int, c_double], H),
    ("mnas_modulator_free", [H], None),
    ("mnas_modulator_add_params", [H, H, c_char_p, c_int], c_int),
    ("mnas_modulator_num_params", [H], c_size_t),
    ("mnas_modulator_forward", [H, H, H, c_void_p, HP, HP], ST),
    ("mnas_modulator_set_form", [H, c_int], ST),
    ("mnas_method_name", [c_int], c_char_p),
    ("mnas_inner_lr_mode_name", [c_int], c_char_p),
    ("mnas_learner_create", [H, POINTER(S.LearnerOptions)], H),
    ("mnas_learner_create_with_space", [H, POINTER(S.LearnerOptions), H], H),
    ("mnas_learner_search_space", [H], H),
    ("mnas_learner_free", [H], None),
    ("mnas_learner_params", [H], H),
    ("mnas_learner_iteration", [H], c_int64),
    ("mnas_learner_step", [H, HP, c_size_t, DP], ST),
    ("mnas_learner_task_objective", [H, H, c_uint64, DP, c_int], ST),
    ("mnas_learner_train", [H, TASK_SOURCE_FN, c_void_p, c_int64, PROGRESS_FN, c_void_p], ST),
    ("mnas_learner_evaluate", [H, H, c_int, DP, DP], ST),
    ("mnas_learner_evaluate_accuracy", [H, H, c_int, DP, DP], ST),
    ("mnas_learner_discretize", [H, c_int], ST),
    ("mnas_learner_set_lr", [H, c_double, c_double], ST),
    ("mnas_learner_set_alpha_temperature", [H, c_double], ST),
    ("mnas_learner_alpha_temperature", [H], c_double),
    ("mnas_learner_is_discrete", [H], c_int),
    ("mnas_learner_genotype", [H, H], H),
    ("mnas_learner_adapt_predict", [H, H, c_int, c_size_t, DATA, DATA], ST),
    # io.h: checkpoints
    ("mnas_learner_save", [H, c_char_p], ST),
    ("mnas_learner_load", [H, c_char_p], ST),
    ("mnas_learner_checkpoint_options", [H, c_char_p, POINTER(S.LearnerOptions)], ST),
    ("mnas_params_save", [H, c_char_p], ST),
    ("mnas_params_load", [H, c_char_p], ST),
    ("mnas_optim_save", [H, c_char_p], ST),
    ("mnas_optim_load", [H, c_char_p], ST),
    ("mnas_learner_train_checkpointed",
     [H, TASK_SOURCE_FN, c_void_p, c_int64, c_char_p, c_int64, PROGRESS_FN, c_void_p], ST),
]


class _Api:
    """The loaded C functions as attributes (``C.mnas_add(...)``).

    Before a library is loaded, the first attribute access loads one from
    the default places (see the module docstring)."""

    def __getattr__(self, name):
        if name.startswith("__") or not name.startswith("mnas_"):
            raise AttributeError(name)
        if _state["cdll"] is None:
            load()
            return getattr(self, name)
        raise AttributeError("libmnas function %s is not in the binding's table" % name)


C = _Api()
_state = {"cdll": None, "path": None, "in_use": False, "status_prefixes": ()}


def _repo_root():
    # bindings/python/mnas/_lib.py -> the checkout's root
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.dirname(os.path.dirname(os.path.dirname(here)))


def _build_tree_candidates():
    build = os.path.join(_repo_root(), "build")
    if not os.path.isdir(build):
        return []
    dirs = [os.path.join(build, "default"), os.path.join(build, "ci")]
    dirs += sorted(d for d in glob.glob(os.path.join(build, "*"))
                   if d not in dirs and os.path.isdir(d) and not d.endswith("asan"))
    out = []
    for d in dirs:
        soname = os.path.join(d, "libmnas.so.%d" % EXPECTED_MAJOR)
        if os.path.exists(soname):
            out.append(soname)
        else:
            out += sorted(glob.glob(os.path.join(d, "libmnas.so.*")))
    return out


def _system_candidates():
    out = []
    found = ctypes.util.find_library("mnas")
    if found:
        out.append(found)
    out.append("libmnas.so.%d" % EXPECTED_MAJOR)
    return out


def _bind(cdll, path):
    api = {}
    for name, argtypes, restype in FUNCTIONS:
        try:
            f = getattr(cdll, name)
        except AttributeError:
            raise LibraryVersionError(
                "libmnas at %s has no function %s: the library is older than these "
                "bindings (built for libmnas %d.x); rebuild or point MNAS_LIBRARY at a "
                "newer one" % (path, name, EXPECTED_MAJOR)) from None
        f.argtypes = argtypes
        f.restype = restype
        api[name] = f
    return api


def _check_version(cdll, path):
    try:
        f = cdll.mnas_version_number
    except AttributeError:
        raise LibraryVersionError("%s is not libmnas (no mnas_version_number)" % path) from None
    f.argtypes = []
    f.restype = c_int
    number = f()
    major = number // 10000
    if major != EXPECTED_MAJOR:
        raise LibraryVersionError(
            "libmnas at %s is version %d.%d.%d (major %d), but this mnas package needs "
            "major version %d; install matching bindings or point MNAS_LIBRARY at a "
            "libmnas.so.%d" % (path, major, number // 100 % 100, number % 100, major,
                               EXPECTED_MAJOR, EXPECTED_MAJOR))
    return number


def _open(path):
    cdll = ctypes.CDLL(path)
    _check_version(cdll, path)
    api = _bind(cdll, path)
    return cdll, api


def load(path: Optional[PathLike] = None) -> str:
    """Load libmnas and return the path it was loaded from.

    ``path`` names the shared library explicitly; without it the library
    comes from ``MNAS_LIBRARY``, the build tree, or the system, in that
    order. Loading again is a no-op, unless another path is asked for while
    objects of the first library exist (that raises ``LibraryError``)."""
    if path is not None:
        path = os.fspath(path)
        if _state["cdll"] is not None:
            if os.path.realpath(path) == os.path.realpath(_state["path"] or ""):
                return _state["path"]
            if _state["in_use"]:
                from .errors import LibraryError
                raise LibraryError("libmnas is already loaded from %s and in use; cannot "
                                   "switch to %s in this process" % (_state["path"], path))
        candidates, explicit = [path], "mnas.load(%r)" % path
    elif _state["cdll"] is not None:
        return _state["path"]
    elif os.environ.get("MNAS_LIBRARY"):
        candidates, explicit = [os.environ["MNAS_LIBRARY"]], "MNAS_LIBRARY"
    else:
        candidates, explicit = _build_tree_candidates() + _system_candidates(), None
    errors = []
    version_error = None
    for cand in candidates:
        try:
            cdll, api = _open(cand)
        except OSError as e:
            errors.append("%s: %s" % (cand, e))
            continue
        except LibraryVersionError as e:
            # An explicit choice must match; in the automatic search a stale or
            # foreign build is skipped in favour of the next candidate.
            if explicit:
                raise
            version_error = version_error or e
            errors.append("%s: %s" % (cand, e))
            continue
        _install(cdll, api, cand)
        return cand
    if version_error is not None:
        raise version_error
    if explicit:
        raise LibraryNotFoundError("cannot load libmnas given by %s: %s"
                                   % (explicit, "; ".join(errors)))
    raise LibraryNotFoundError(
        "libmnas not found. Build it (cmake --preset default && cmake --build --preset "
        "default), set MNAS_LIBRARY to the path of libmnas.so.%d, or call "
        "mnas.load(path). Tried: %s" % (EXPECTED_MAJOR, "; ".join(errors) or "nothing"))


def _install(cdll, api, path):
    C.__dict__.clear()
    C.__dict__.update(api)
    _state["cdll"] = cdll
    _state["path"] = path
    prefixes = []
    for status in range(-1, -64, -1):
        s = api["mnas_status_str"](status).decode()
        if s == "unknown status":
            break
        prefixes.append((s + ": ", status))
    prefixes.sort(key=lambda p: -len(p[0]))
    _state["status_prefixes"] = tuple(prefixes)


def loaded_path() -> Optional[str]:
    """The path libmnas was loaded from, or None."""
    return _state["path"]


def mark_in_use() -> None:
    _state["in_use"] = True


def status_of_message(message: str) -> int:
    """The status a library message starts with ("shape mismatch: ..."), or
    MNAS_E_INTERNAL when it names none (libmnas formats every message as
    "<mnas_status_str(status)>: <details>")."""
    for prefix, status in _state["status_prefixes"]:
        if message.startswith(prefix):
            return status
    return -10


def decode(b: Optional[bytes]) -> str:
    return b.decode("utf-8", "replace") if b is not None else ""

