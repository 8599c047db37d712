/* Private figure header: the figure's state, shared by the public API and
 * PNG output (plot.c) and the rasteriser (plot_render.c). */
#ifndef MNAS_PLOT_INTERNAL_H
#define MNAS_PLOT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <mnas/io.h>

#include "core/core_internal.h"

/* From font.c: row `row` of the glyph of byte c, leftmost column in bit 4. */
unsigned mnas__font_row(unsigned char c, int row);

#define FIG_MAGIC 0x6d6e4647u /* "mnFG" */
#define GLYPH_W 5
#define GLYPH_H 10
#define GLYPH_ADV 6
#define MAX_SIZE_PX 64.0  /* largest line width / point radius */
#define AUTO_LIMIT 1e300  /* data beyond this magnitude is ignored by auto ranges */
#define MAX_TICKS 24
#define MAX_TEXT_DRAWN 2048 /* characters; more never fit on a figure */

#define COL_WHITE 0xFFFFFFu
#define COL_GRID 0xEBEBEBu
#define COL_FRAME 0x262626u
#define COL_TEXT 0x1A1A1Au
#define COL_LEGEND_EDGE 0xB0B0B0u

enum { SERIES_LINE = 0, SERIES_POINTS = 1 };

typedef struct series {
    int kind;
    uint32_t rgb;
    double size;  /* line width or point radius, pixels */
    char *label;  /* NULL: no legend entry */
    size_t n;
    double *x;    /* 2n doubles: x[0..n), then y */
    double *y;
} series;

typedef struct rect {
    int x0, y0, x1, y1; /* inclusive */
} rect;

typedef struct fig_panel {
    series *s;
    size_t ns, cap;
    char *title, *xlabel, *ylabel;
    int fixed[2];   /* per axis (0 = x, 1 = y): range given by the caller */
    double lim[2][2]; /* the caller's range of fixed axes */
    double range[2][2]; /* the range drawn (fixed or automatic) */
    int legend;
    rect cell;      /* the panel's share of the figure */
    rect frame;     /* the plot area's frame */
    int compact;    /* too small for text: frame and data only */
} fig_panel;

struct mnas_figure {
    uint32_t magic;
    mnas_ctx *ctx;
    int w, h, rows, cols;
    int text_scale; /* 0: automatic */
    int scale;      /* in use */
    uint8_t *rgb;   /* h rows of 3w bytes */
    uint8_t *mask;  /* coverage scratch, one byte per pixel of the largest cell */
    int mask_w;
    fig_panel *panels;
};

static inline int fig_ok(const mnas_figure *f) { return f && f->magic == FIG_MAGIC; }

/* Data to pixel coordinates (pixel centres at integers). */
typedef struct mapping {
    double x0, sx, y1, sy, xmin, ymin;
} mapping;

static inline double map_x(const mapping *m, double x) { return m->x0 + (x - m->xmin) * m->sx; }
static inline double map_y(const mapping *m, double y) { return m->y1 - (y - m->ymin) * m->sy; }

/* plot_render.c: place the panels' cells and frames for the figure's size
 * and text scale; the mapping of a panel's ranges to its frame; draw one
 * panel (clearing its cell) or every panel. */
void mnas__fig_layout(mnas_figure *f);
mapping mnas__fig_panel_mapping(const fig_panel *p);
void mnas__fig_render_panel(mnas_figure *f, int index);
void mnas__fig_render_all(mnas_figure *f);

#endif /* MNAS_PLOT_INTERNAL_H */
