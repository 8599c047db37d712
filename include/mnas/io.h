/** @file
 * @brief libmnas — io layer: checkpoints of learners, parameter sets and optimisers (exact
 * resume, divergence guard), and PNG figures (line and scatter plots on a
 * grid of panels), used by the examples to draw the paper's Figure 3. */
#ifndef MNAS_IO_H
#define MNAS_IO_H

#include <stddef.h>
#include <stdint.h>

#include <mnas/core.h>
#include <mnas/meta.h>
#include <mnas/nn.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- checkpoints ----------------------------------------------------------
 *
 * A checkpoint holds everything needed to continue training exactly: the
 * learner's options, every parameter (by name, with its shape), the
 * optimiser state (Adam moments and step count), the iteration counter, the
 * architecture-evaluation phase (and M-NAS-Shared's fixed one-hot alpha)
 * and the context RNG's state. Training N iterations straight, or N/2,
 * save, load in a new process and N/2 more, gives bit-identical parameters
 * (with any number of threads). The byte-level format (magic, format
 * version, endianness marker, named and shaped records, a CRC-32 per record
 * and over the whole file) is in docs/checkpoints.md.
 *
 * Writes are atomic: the file is written to "<path>.tmp" in the same folder,
 * flushed to disk (fsync), renamed over path, and the folder is synced; a
 * crash leaves either the old file or the new one. Loads read and validate
 * the whole file (every CRC, shape, name, option and value) before anything
 * changes: a corrupt, truncated, foreign, version-mismatched or
 * incompatible file gives MNAS_E_FORMAT, MNAS_E_MISMATCH (the file does not
 * fit the object), MNAS_E_NUMERIC (non-finite values) or MNAS_E_IO with a
 * message naming the problem, and leaves the object exactly as it was. */

/** The format version this library writes and reads. */
#define MNAS_CHECKPOINT_FORMAT_VERSION 1

/** Save the learner's complete training state to path. */
MNAS_API mnas_status mnas_learner_save(const mnas_learner *l, const char *path);

/** Restore a state saved by mnas_learner_save. The learner must have been
 * created with the same options (all but threads, which never change
 * results, and the Adam rates outer_lr and arch_lr, which are state: the
 * file's are restored); a difference gives MNAS_E_MISMATCH naming the
 * option. The context RNG's state is restored too. */
MNAS_API mnas_status mnas_learner_load(mnas_learner *l, const char *path);

/** The options a checkpoint was written with, so that a new process can
 * create a matching learner (set threads as you like) and load into it.
 * outer_lr and arch_lr are the rates in force when it was written (see
 * mnas_learner_set_lr); loading does not compare them but restores them.
 * opts must be initialised (MNAS_LEARNER_OPTIONS_INIT): its struct_size
 * says how much of it is written. The file is fully validated first. */
MNAS_API mnas_status mnas_learner_checkpoint_options(mnas_ctx *ctx, const char *path,
                                                     mnas_learner_options *opts);

/** Save / load a parameter set (values only). Loading needs the same names
 * with the same shapes (in any order) and finite values. */
MNAS_API mnas_status mnas_params_save(const mnas_params *p, const char *path);
/** Load values saved by mnas_params_save into p (same names and shapes); p is unchanged on failure. */
MNAS_API mnas_status mnas_params_load(mnas_params *p, const char *path);

/** Save an optimiser's state on its own: its kind, its step count and, per
 * parameter (by name, with its shape), the SGD momentum or the Adam first
 * and second moments. The parameter values are not in it (save them with
 * mnas_params_save), nor the options and group learning rates, which are
 * configuration given again when the optimiser is created. Saving the
 * parameters and the optimiser after N steps, then loading both into a
 * fresh parameter set and optimiser made the same way, continues training
 * bit-identically. The write is atomic, as for every checkpoint. */
MNAS_API mnas_status mnas_optim_save(const mnas_optim *o, const char *path);
/** Restore a state saved by mnas_optim_save into o. The file must be an
 * optimiser checkpoint (MNAS_E_FORMAT otherwise) of the same kind, over as
 * many parameters with the same names and shapes as o's (MNAS_E_MISMATCH
 * naming the difference), with finite moments (MNAS_E_NUMERIC) and second
 * moments >= 0; o is unchanged on every failure. */
MNAS_API mnas_status mnas_optim_load(mnas_optim *o, const char *path);

/** mnas_learner_train with checkpoints and a divergence guard. The starting
 * state is saved to path first, then every `every` iterations (0: only at
 * the end) and after the last one. A NaN or Inf loss, gradient or parameter
 * stops training with MNAS_E_NUMERIC and a message naming the iteration;
 * the checkpoint on disk is the last good one saved, and the learner is
 * left at its last good state (the failing update is not applied; if the
 * parameters themselves turned non-finite, the checkpoint is loaded back).
 * progress as for mnas_learner_train. */
MNAS_API mnas_status mnas_learner_train_checkpointed(mnas_learner *l, mnas_task_source source,
                                                     void *source_user, int64_t iterations,
                                                     const char *path, int64_t every,
                                                     mnas_progress_fn progress, void *progress_user);

/* ---- figures ------------------------------------------------------------
 *
 * A figure is an RGB raster of width x height pixels split into a grid of
 * rows x cols panels, numbered row by row from the top left (panel 0). Each
 * panel has axes (frame, ticks with round-number labels, a light grid), an
 * optional title and axis labels, and a legend listing the labelled series.
 * Series are copied into the figure; the panel is redrawn after every call
 * that changes it, so mnas_figure_pixels and mnas_figure_save_png always see
 * the current picture.
 *
 * Coordinates: pixel (0, 0) is the top-left pixel; data x grows to the right
 * and data y upwards. A panel's data range is fixed with
 * mnas_figure_panel_range or, per axis, chosen from the data (5 % padding).
 *
 * Colours are 0xRRGGBB. Every call that fails returns a status, records a
 * message on the figure's context and leaves the figure as it was. Calls on
 * a NULL figure return MNAS_E_INVALID without a message. A figure belongs to
 * one thread at a time. */

/** A figure of one or more panels of line and point series (opaque). */
typedef struct mnas_figure mnas_figure;

/** Limits checked by mnas_figure_create. */
#define MNAS_FIGURE_MIN_PIXELS 64
/** Largest number of pixels of a figure. */
#define MNAS_FIGURE_MAX_PIXELS 8192
/** Largest number of panels along a side of the grid. */
#define MNAS_FIGURE_MAX_GRID 8

/** Where a panel's legend goes. */
typedef enum mnas_legend_pos {
    MNAS_LEGEND_AUTO = 0, /**< the corner that covers the fewest drawn pixels (default) */
    MNAS_LEGEND_NONE = 1, /**< no legend */
    MNAS_LEGEND_UPPER_RIGHT = 2,
    MNAS_LEGEND_UPPER_LEFT = 3,
    MNAS_LEGEND_LOWER_LEFT = 4,
    MNAS_LEGEND_LOWER_RIGHT = 5
} mnas_legend_pos;

/** A white figure of width_px x height_px (each in 64..8192) with rows x cols
 * panels (each in 1..8). NULL on failure (message on ctx). */
MNAS_API mnas_figure *mnas_figure_create(mnas_ctx *ctx, int width_px, int height_px, int rows,
                                         int cols);
/** mnas_figure_free(NULL) is a no-op. */
MNAS_API void mnas_figure_free(mnas_figure *fig);

/** Number of panels (rows * cols), or -1 for a NULL figure. */
MNAS_API int mnas_figure_panels(const mnas_figure *fig);

/** Colour number index of the figure palette (Okabe & Ito's colour-blind safe
 * colours without yellow, then black; it repeats after 7). */
MNAS_API uint32_t mnas_figure_color(unsigned index);

/** Text size: 1..4 times the 6x10-pixel built-in font, or 0 (the default) to
 * choose from the smaller side of a panel's share of the figure: 1 below
 * 450 pixels, 2 below 750, 3 below 1050, else 4. It sets the margins too,
 * so every panel is laid out again. */
MNAS_API mnas_status mnas_figure_text_scale(mnas_figure *fig, int scale);

/** The data range of a panel. Each axis is either fixed (finite min < max,
 * with a finite span) or automatic: pass NaN for both of its bounds. An
 * automatic axis covers the finite data of the panel (values of magnitude
 * above 1e300 are ignored; when the other axis is fixed, only points inside
 * its range count), padded by 5 % on each side; [0, 1] without data. */
MNAS_API mnas_status mnas_figure_panel_range(mnas_figure *fig, int panel, double xmin, double xmax,
                                             double ymin, double ymax);
/** The range in use now: range = {xmin, xmax, ymin, ymax}. */
MNAS_API mnas_status mnas_figure_panel_get_range(const mnas_figure *fig, int panel,
                                                 double range[4]);

/** A polyline through the n points (x[i], y[i]), width_px wide (0 < width_px
 * <= 64), anti-aliased and clipped to the panel's plot area. A point with a
 * NaN or infinite coordinate breaks the line: the segments on each side of
 * it are not drawn. label (copied) adds a legend entry; NULL for none.
 * n >= 1 (a single point draws nothing but still has its legend entry). */
MNAS_API mnas_status mnas_figure_line(mnas_figure *fig, int panel, const double *x, const double *y,
                                      size_t n, uint32_t rgb, double width_px, const char *label);

/** Filled, anti-aliased circles of radius radius_px (0 < radius_px <= 64)
 * at the n points, clipped to the plot area; points with a NaN or infinite
 * coordinate are skipped. label as for mnas_figure_line. */
MNAS_API mnas_status mnas_figure_points(mnas_figure *fig, int panel, const double *x,
                                        const double *y, size_t n, uint32_t rgb, double radius_px,
                                        const char *label);

/** Panel title (centred above the plot area) and axis labels (below the x
 * ticks, and rotated left of the y ticks). Texts are copied; NULL or ""
 * removes one. The font covers printable ASCII (32..126); other bytes show
 * as a box. Text that does not fit is cut at the panel's edge. */
MNAS_API mnas_status mnas_figure_title(mnas_figure *fig, int panel, const char *text);
/** Set the x and y axis labels of a panel (NULL: none). */
MNAS_API mnas_status mnas_figure_axis_labels(mnas_figure *fig, int panel, const char *xlabel,
                                             const char *ylabel);

/** Where the panel's legend goes (an mnas_legend_pos value). */
MNAS_API mnas_status mnas_figure_legend(mnas_figure *fig, int panel, int pos);

/** Remove the series, texts and fixed ranges of a panel (legend back to AUTO). */
MNAS_API mnas_status mnas_figure_panel_clear(mnas_figure *fig, int panel);

/** The pixel rectangle of the panel's frame, inclusive: data range corners
 * (xmin, ymax) and (xmax, ymin) fall on the centres of pixels (x0, y0) and
 * (x1, y1). Series are drawn strictly inside the frame. */
MNAS_API mnas_status mnas_figure_plot_area(const mnas_figure *fig, int panel, int *x0, int *y0,
                                           int *x1, int *y1);
/** Where the data point (x, y) lands in the panel, in pixels (not rounded;
 * pixel centres are at integers). */
MNAS_API mnas_status mnas_figure_data_to_pixel(const mnas_figure *fig, int panel, double x, double y,
                                               double *px, double *py);

/** The figure's pixels: *rgb points at height rows of width * 3 bytes (R, G,
 * B), top row first, owned by the figure and valid until the next call that
 * changes or frees it. w and h may be NULL. */
MNAS_API mnas_status mnas_figure_pixels(const mnas_figure *fig, const uint8_t **rgb, int *w, int *h);

/** Write the figure as an 8-bit RGB PNG (libpng). The file is written to
 * "<path>.tmp", flushed to disk and renamed over path, so path is either
 * left as it was or replaced by the complete image (a symbolic link at path
 * is replaced, not followed; two writers of one path at once collide on
 * the temporary name). Failures to create, write, flush or rename give
 * MNAS_E_IO with the file name and the system's reason, and remove the
 * temporary file; MNAS_E_NOMEM if libpng runs out of memory. */
MNAS_API mnas_status mnas_figure_save_png(const mnas_figure *fig, const char *path);

/* ---- 2-D maps of embeddings (the paper's Figure 6) --------------------------
 *
 * t-SNE (van der Maaten & Hinton, 2008) in its exact O(n²) form: x holds n
 * points of dim doubles (row-major); y receives n points of 2 doubles,
 * centred on the origin. Input distances are Gaussian affinities whose
 * widths give each point the perplexity asked (1 <= perplexity <= (n - 1) /
 * 3; 30 is usual), symmetrised; the map is fitted by gradient descent with
 * momentum and per-coordinate gains, early exaggeration 12 for the first
 * 250 iterations (1000 is usual). The start is drawn from seed, and the
 * computation is serial in a fixed order: a seed gives the same map every
 * time. n is 4..8192 (the method holds two n x n matrices of doubles);
 * non-finite input gives MNAS_E_NUMERIC, bad sizes MNAS_E_INVALID, and y is
 * left unchanged by any refusal (a map that diverged gives MNAS_E_NUMERIC
 * with y zeroed). */
/** Exact t-SNE of n points of dim values (x, row-major) into y [n, 2]; seeded and serial, so reproducible. */
MNAS_API mnas_status mnas_tsne(mnas_ctx *ctx, const double *x, size_t n, size_t dim, double perplexity,
                               int iterations, uint64_t seed, double *y);

#ifdef __cplusplus
}
#endif

#endif /* MNAS_IO_H */
