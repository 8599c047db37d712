/* PNG figures: a grid of panels with axes, anti-aliased lines, filled
 * points, titles and legends, rasterised in memory (plot_render.c) and written by libpng.
 * Enough plotting for the paper's Figure 3 without a plotting dependency. */
#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mnas/io.h>

#include "core/core_internal.h"
#include "io/atomic_file.h"
#include "io/plot_internal.h"

/* ------------------------------------------------------- validation */

static mnas_status check_panel(const mnas_figure *f, int panel, const char *fn)
{
    int n = f->rows * f->cols;
    if (panel < 0 || panel >= n)
        return mnas__error(f->ctx, MNAS_E_INVALID, "%s: panel %d is outside 0..%d (a %dx%d grid)", fn,
                           panel, n - 1, f->rows, f->cols);
    return MNAS_OK;
}

static char *copy_text(mnas_ctx *ctx, const char *s)
{
    size_t len = strlen(s);
    char *c = mnas__alloc(ctx, len + 1);
    if (c) memcpy(c, s, len + 1);
    return c;
}

static void free_series(mnas_ctx *ctx, series *s)
{
    mnas__free(ctx, s->x);
    mnas__free(ctx, s->label);
}

static void clear_panel(mnas_ctx *ctx, fig_panel *p)
{
    for (size_t k = 0; k < p->ns; k++) free_series(ctx, &p->s[k]);
    mnas__free(ctx, p->s);
    mnas__free(ctx, p->title);
    mnas__free(ctx, p->xlabel);
    mnas__free(ctx, p->ylabel);
    p->s = NULL;
    p->ns = p->cap = 0;
    p->title = p->xlabel = p->ylabel = NULL;
    p->fixed[0] = p->fixed[1] = 0;
    p->legend = MNAS_LEGEND_AUTO;
}

/* ------------------------------------------------------------ public */

mnas_figure *mnas_figure_create(mnas_ctx *ctx, int width_px, int height_px, int rows, int cols)
{
    static const char fn[] = "mnas_figure_create";
    if (!mnas__ctx_ok(ctx)) return NULL;
    if (width_px < MNAS_FIGURE_MIN_PIXELS || width_px > MNAS_FIGURE_MAX_PIXELS ||
        height_px < MNAS_FIGURE_MIN_PIXELS || height_px > MNAS_FIGURE_MAX_PIXELS) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: size %dx%d pixels: width and height must be in %d..%d", fn,
                    width_px, height_px, MNAS_FIGURE_MIN_PIXELS, MNAS_FIGURE_MAX_PIXELS);
        return NULL;
    }
    if (rows < 1 || rows > MNAS_FIGURE_MAX_GRID || cols < 1 || cols > MNAS_FIGURE_MAX_GRID) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: grid of %d rows x %d cols: rows and cols must be in 1..%d",
                    fn, rows, cols, MNAS_FIGURE_MAX_GRID);
        return NULL;
    }
    mnas_figure *f = mnas__calloc(ctx, 1, sizeof *f);
    if (!f) {
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate a figure", fn);
        return NULL;
    }
    f->ctx = ctx;
    f->w = width_px;
    f->h = height_px;
    f->rows = rows;
    f->cols = cols;
    /* cells are w/cols or one pixel wider, same for heights */
    f->mask_w = width_px / cols + 1;
    int mask_h = height_px / rows + 1;
    f->rgb = mnas__alloc(ctx, (size_t)width_px * (size_t)height_px * 3u);
    f->mask = mnas__calloc(ctx, (size_t)f->mask_w * (size_t)mask_h, 1);
    f->panels = mnas__calloc(ctx, (size_t)rows * (size_t)cols, sizeof *f->panels);
    if (!f->rgb || !f->mask || !f->panels) {
        mnas__free(ctx, f->rgb);
        mnas__free(ctx, f->mask);
        mnas__free(ctx, f->panels);
        mnas__free(ctx, f);
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate %dx%d pixels", fn, width_px, height_px);
        return NULL;
    }
    for (int i = 0; i < rows * cols; i++) f->panels[i].legend = MNAS_LEGEND_AUTO;
    f->magic = FIG_MAGIC;
    mnas__fig_layout(f);
    mnas__fig_render_all(f);
    return f;
}

void mnas_figure_free(mnas_figure *fig)
{
    if (!fig_ok(fig)) return;
    mnas_ctx *ctx = fig->ctx;
    for (int i = 0; i < fig->rows * fig->cols; i++) clear_panel(ctx, &fig->panels[i]);
    mnas__free(ctx, fig->panels);
    mnas__free(ctx, fig->mask);
    mnas__free(ctx, fig->rgb);
    fig->magic = 0;
    mnas__free(ctx, fig);
}

int mnas_figure_panels(const mnas_figure *fig) { return fig_ok(fig) ? fig->rows * fig->cols : -1; }

uint32_t mnas_figure_color(unsigned index)
{
    static const uint32_t palette[7] = {0x0072B2u, 0xD55E00u, 0x009E73u, 0xCC79A7u,
                                        0xE69F00u, 0x56B4E9u, 0x000000u};
    return palette[index % 7u];
}

mnas_status mnas_figure_text_scale(mnas_figure *fig, int scale)
{
    if (!fig_ok(fig)) return MNAS_E_INVALID;
    if (scale < 0 || scale > 4)
        return mnas__error(fig->ctx, MNAS_E_INVALID,
                           "mnas_figure_text_scale: scale %d is outside 0..4 (0 = automatic)", scale);
    fig->text_scale = scale;
    mnas__fig_layout(fig);
    mnas__fig_render_all(fig);
    return MNAS_OK;
}

mnas_status mnas_figure_panel_range(mnas_figure *fig, int panel, double xmin, double xmax,
                                    double ymin, double ymax)
{
    static const char fn[] = "mnas_figure_panel_range";
    if (!fig_ok(fig)) return MNAS_E_INVALID;
    mnas_status st = check_panel(fig, panel, fn);
    if (st) return st;
    double lim[2][2] = {{xmin, xmax}, {ymin, ymax}};
    int fixed[2];
    for (int axis = 0; axis < 2; axis++) {
        double lo = lim[axis][0], hi = lim[axis][1];
        char name = axis ? 'y' : 'x';
        if (isnan(lo) && isnan(hi)) {
            fixed[axis] = 0;
            continue;
        }
        if (!isfinite(lo) || !isfinite(hi))
            return mnas__error(fig->ctx, MNAS_E_INVALID,
                               "%s: %c range [%g, %g] must be finite (or NaN, NaN for automatic)", fn,
                               name, lo, hi);
        if (!(lo < hi) || !isfinite(hi - lo))
            return mnas__error(fig->ctx, MNAS_E_INVALID,
                               "%s: %c range [%g, %g] needs min < max and a finite span", fn, name, lo,
                               hi);
        fixed[axis] = 1;
    }
    fig_panel *p = &fig->panels[panel];
    for (int axis = 0; axis < 2; axis++) {
        p->fixed[axis] = fixed[axis];
        p->lim[axis][0] = lim[axis][0];
        p->lim[axis][1] = lim[axis][1];
    }
    mnas__fig_render_panel(fig, panel);
    return MNAS_OK;
}

mnas_status mnas_figure_panel_get_range(const mnas_figure *fig, int panel, double range[4])
{
    static const char fn[] = "mnas_figure_panel_get_range";
    if (!fig_ok(fig)) return MNAS_E_INVALID;
    mnas_status st = check_panel(fig, panel, fn);
    if (st) return st;
    if (!range) return mnas__error(fig->ctx, MNAS_E_INVALID, "%s: range is NULL", fn);
    const fig_panel *p = &fig->panels[panel];
    range[0] = p->range[0][0];
    range[1] = p->range[0][1];
    range[2] = p->range[1][0];
    range[3] = p->range[1][1];
    return MNAS_OK;
}

static mnas_status add_series(mnas_figure *fig, int panel, const double *x, const double *y, size_t n,
                              uint32_t rgb, double size, const char *label, int kind, const char *fn)
{
    if (!fig_ok(fig)) return MNAS_E_INVALID;
    mnas_ctx *ctx = fig->ctx;
    const char *size_name = kind == SERIES_LINE ? "width_px" : "radius_px";
    mnas_status st = check_panel(fig, panel, fn);
    if (st) return st;
    if (!x) return mnas__error(ctx, MNAS_E_INVALID, "%s: x is NULL", fn);
    if (!y) return mnas__error(ctx, MNAS_E_INVALID, "%s: y is NULL", fn);
    if (n == 0) return mnas__error(ctx, MNAS_E_INVALID, "%s: n is 0 (no points)", fn);
    if (rgb > 0xFFFFFFu)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: colour 0x%lx is not 0xRRGGBB", fn, (unsigned long)rgb);
    if (!(size > 0.0 && size <= MAX_SIZE_PX))
        return mnas__error(ctx, MNAS_E_INVALID, "%s: %s %g is outside (0, %g]", fn, size_name, size,
                           MAX_SIZE_PX);
    size_t bytes;
    if (!mnas__mul_ok(n, 2 * sizeof(double), &bytes))
        return mnas__error(ctx, MNAS_E_INVALID, "%s: n %zu is too large", fn, n);

    fig_panel *p = &fig->panels[panel];
    if (p->ns == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 4;
        size_t sz;
        if (!mnas__mul_ok(cap, sizeof(series), &sz))
            return mnas__error(ctx, MNAS_E_NOMEM, "%s: too many series in panel %d", fn, panel);
        series *grown = mnas__alloc(ctx, sz);
        if (!grown) return mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot grow the series list", fn);
        if (p->ns) memcpy(grown, p->s, p->ns * sizeof(series));
        mnas__free(ctx, p->s);
        p->s = grown;
        p->cap = cap;
    }
    series s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.rgb = rgb;
    s.size = size;
    s.n = n;
    s.x = mnas__alloc(ctx, bytes);
    s.label = label ? copy_text(ctx, label) : NULL;
    if (!s.x || (label && !s.label)) {
        free_series(ctx, &s);
        return mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot copy %zu points", fn, n);
    }
    s.y = s.x + n;
    memcpy(s.x, x, n * sizeof(double));
    memcpy(s.y, y, n * sizeof(double));
    p->s[p->ns++] = s;
    mnas__fig_render_panel(fig, panel);
    return MNAS_OK;
}

mnas_status mnas_figure_line(mnas_figure *fig, int panel, const double *x, const double *y, size_t n,
                             uint32_t rgb, double width_px, const char *label)
{
    return add_series(fig, panel, x, y, n, rgb, width_px, label, SERIES_LINE, "mnas_figure_line");
}

mnas_status mnas_figure_points(mnas_figure *fig, int panel, const double *x, const double *y,
                               size_t n, uint32_t rgb, double radius_px, const char *label)
{
    return add_series(fig, panel, x, y, n, rgb, radius_px, label, SERIES_POINTS, "mnas_figure_points");
}

/* *fresh = a copy of text, or NULL for NULL or "" (which clear a text).
 * 0 if the copy cannot be allocated. */
static int new_text(mnas_ctx *ctx, const char *text, char **fresh)
{
    *fresh = NULL;
    if (text && *text) {
        *fresh = copy_text(ctx, text);
        if (!*fresh) return 0;
    }
    return 1;
}

mnas_status mnas_figure_title(mnas_figure *fig, int panel, const char *text)
{
    static const char fn[] = "mnas_figure_title";
    if (!fig_ok(fig)) return MNAS_E_INVALID;
    mnas_status st = check_panel(fig, panel, fn);
    if (st) return st;
    char *t;
    if (!new_text(fig->ctx, text, &t))
        return mnas__error(fig->ctx, MNAS_E_NOMEM, "%s: cannot copy the title", fn);
    fig_panel *p = &fig->panels[panel];
    mnas__free(fig->ctx, p->title);
    p->title = t;
    mnas__fig_render_panel(fig, panel);
    return MNAS_OK;
}

mnas_status mnas_figure_axis_labels(mnas_figure *fig, int panel, const char *xlabel,
                                    const char *ylabel)
{
    static const char fn[] = "mnas_figure_axis_labels";
    if (!fig_ok(fig)) return MNAS_E_INVALID;
    mnas_status st = check_panel(fig, panel, fn);
    if (st) return st;
    char *xl, *yl;
    if (!new_text(fig->ctx, xlabel, &xl))
        return mnas__error(fig->ctx, MNAS_E_NOMEM, "%s: cannot copy the x label", fn);
    if (!new_text(fig->ctx, ylabel, &yl)) {
        mnas__free(fig->ctx, xl);
        return mnas__error(fig->ctx, MNAS_E_NOMEM, "%s: cannot copy the y label", fn);
    }
    fig_panel *p = &fig->panels[panel];
    mnas__free(fig->ctx, p->xlabel);
    mnas__free(fig->ctx, p->ylabel);
    p->xlabel = xl;
    p->ylabel = yl;
    mnas__fig_render_panel(fig, panel);
    return MNAS_OK;
}

mnas_status mnas_figure_legend(mnas_figure *fig, int panel, int pos)
{
    static const char fn[] = "mnas_figure_legend";
    if (!fig_ok(fig)) return MNAS_E_INVALID;
    mnas_status st = check_panel(fig, panel, fn);
    if (st) return st;
    if (pos < MNAS_LEGEND_AUTO || pos > MNAS_LEGEND_LOWER_RIGHT)
        return mnas__error(fig->ctx, MNAS_E_INVALID, "%s: position %d is not an mnas_legend_pos (0..%d)",
                           fn, pos, (int)MNAS_LEGEND_LOWER_RIGHT);
    fig->panels[panel].legend = pos;
    mnas__fig_render_panel(fig, panel);
    return MNAS_OK;
}

mnas_status mnas_figure_panel_clear(mnas_figure *fig, int panel)
{
    if (!fig_ok(fig)) return MNAS_E_INVALID;
    mnas_status st = check_panel(fig, panel, "mnas_figure_panel_clear");
    if (st) return st;
    clear_panel(fig->ctx, &fig->panels[panel]);
    mnas__fig_render_panel(fig, panel);
    return MNAS_OK;
}

mnas_status mnas_figure_plot_area(const mnas_figure *fig, int panel, int *x0, int *y0, int *x1,
                                  int *y1)
{
    static const char fn[] = "mnas_figure_plot_area";
    if (!fig_ok(fig)) return MNAS_E_INVALID;
    mnas_status st = check_panel(fig, panel, fn);
    if (st) return st;
    if (!x0 || !y0 || !x1 || !y1)
        return mnas__error(fig->ctx, MNAS_E_INVALID, "%s: an output pointer is NULL", fn);
    const rect *r = &fig->panels[panel].frame;
    *x0 = r->x0;
    *y0 = r->y0;
    *x1 = r->x1;
    *y1 = r->y1;
    return MNAS_OK;
}

mnas_status mnas_figure_data_to_pixel(const mnas_figure *fig, int panel, double x, double y,
                                      double *px, double *py)
{
    static const char fn[] = "mnas_figure_data_to_pixel";
    if (!fig_ok(fig)) return MNAS_E_INVALID;
    mnas_status st = check_panel(fig, panel, fn);
    if (st) return st;
    if (!px || !py) return mnas__error(fig->ctx, MNAS_E_INVALID, "%s: px or py is NULL", fn);
    mapping m = mnas__fig_panel_mapping(&fig->panels[panel]);
    *px = map_x(&m, x);
    *py = map_y(&m, y);
    return MNAS_OK;
}

mnas_status mnas_figure_pixels(const mnas_figure *fig, const uint8_t **rgb, int *w, int *h)
{
    if (!fig_ok(fig)) return MNAS_E_INVALID;
    if (!rgb) return mnas__error(fig->ctx, MNAS_E_INVALID, "mnas_figure_pixels: rgb is NULL");
    *rgb = fig->rgb;
    if (w) *w = fig->w;
    if (h) *h = fig->h;
    return MNAS_OK;
}

/* ------------------------------------------------------------------ PNG */

typedef struct png_job {
    mnas_ctx *ctx;
    png_structp png;
    png_infop info;
    int fd;
    int write_errno; /* errno of a failed write(), 0 if none */
    int nomem;       /* an allocation for libpng failed */
    char msg[128];   /* libpng's own message */
} png_job;

static void png_job_error(png_structp png, png_const_charp msg)
{
    png_job *j = png_get_error_ptr(png);
    snprintf(j->msg, sizeof j->msg, "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}

static void png_job_warning(png_structp png, png_const_charp msg)
{
    (void)png; /* the library prints nothing */
    (void)msg;
}

static png_voidp png_job_alloc(png_structp png, png_alloc_size_t size)
{
    png_job *j = png_get_mem_ptr(png);
    void *p = mnas__alloc(j->ctx, size);
    if (!p) j->nomem = 1;
    return p;
}

static void png_job_free(png_structp png, png_voidp p)
{
    png_job *j = png_get_mem_ptr(png);
    mnas__free(j->ctx, p);
}

static void png_job_write(png_structp png, png_bytep data, size_t len)
{
    png_job *j = png_get_io_ptr(png);
    while (len > 0) {
        ssize_t k = write(j->fd, data, len);
        if (k < 0) {
            if (errno == EINTR) continue;
            j->write_errno = errno;
            png_error(png, "write failed");
        }
        data += k;
        len -= (size_t)k;
    }
}

static void png_job_flush(png_structp png) { (void)png; }

/* Encode the figure into j->fd. MNAS_OK, or a status with j's fields saying why. */
static mnas_status png_encode(const mnas_figure *f, png_job *j)
{
    j->png = png_create_write_struct_2(PNG_LIBPNG_VER_STRING, j, png_job_error, png_job_warning, j,
                                       png_job_alloc, png_job_free);
    if (!j->png) {
        snprintf(j->msg, sizeof j->msg, "cannot create a libpng writer");
        return MNAS_E_NOMEM;
    }
    j->info = png_create_info_struct(j->png);
    if (!j->info) {
        png_destroy_write_struct(&j->png, NULL);
        snprintf(j->msg, sizeof j->msg, "cannot create a libpng info structure");
        return MNAS_E_NOMEM;
    }
    if (setjmp(png_jmpbuf(j->png))) {
        png_destroy_write_struct(&j->png, &j->info);
        return j->nomem ? MNAS_E_NOMEM : MNAS_E_IO;
    }
    png_set_write_fn(j->png, j, png_job_write, png_job_flush);
    png_set_IHDR(j->png, j->info, (png_uint_32)f->w, (png_uint_32)f->h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(j->png, j->info);
    for (int y = 0; y < f->h; y++) png_write_row(j->png, f->rgb + (size_t)y * (size_t)f->w * 3u);
    png_write_end(j->png, j->info);
    png_destroy_write_struct(&j->png, &j->info);
    return MNAS_OK;
}

/* Fills the temporary file of mnas__atomic_write with the PNG. */
static mnas_status fill_png(void *user, mnas_ctx *ctx, const char *fn, const char *tmp, int fd)
{
    const mnas_figure *fig = user;
    char why[128];
    png_job job;
    memset(&job, 0, sizeof job);
    job.ctx = ctx;
    job.fd = fd;
    mnas_status st = png_encode(fig, &job);
    if (st == MNAS_OK) return MNAS_OK;
    if (job.write_errno)
        return mnas__error(ctx, st, "%s: cannot write '%s': %s", fn, tmp,
                           mnas__errno_text(job.write_errno, why, sizeof why));
    return mnas__error(ctx, st, "%s: libpng failed on '%s': %s", fn, tmp, job.msg);
}

mnas_status mnas_figure_save_png(const mnas_figure *fig, const char *path)
{
    static const char fn[] = "mnas_figure_save_png";
    if (!fig_ok(fig)) return MNAS_E_INVALID;
    /* the cast: the fill callback takes void *, and only reads the figure */
    return mnas__atomic_write(fig->ctx, fn, path, fill_png, (void *)fig);
}
