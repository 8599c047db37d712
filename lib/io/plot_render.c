/* The figure's rasteriser: pixels with coverage, the built-in font, ticks,
 * the layout of the panels, automatic ranges, anti-aliased clipped lines,
 * filled points and legends, drawn into the figure's RGB buffer. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/plot_internal.h"

/* ------------------------------------------------------------ pixels */

static void put_px(mnas_figure *f, int x, int y, uint32_t rgb, unsigned a)
{
    uint8_t *p = f->rgb + ((size_t)y * (size_t)f->w + (size_t)x) * 3u;
    unsigned c[3] = {(rgb >> 16) & 0xFFu, (rgb >> 8) & 0xFFu, rgb & 0xFFu};
    if (a >= 255u) {
        p[0] = (uint8_t)c[0];
        p[1] = (uint8_t)c[1];
        p[2] = (uint8_t)c[2];
        return;
    }
    for (int k = 0; k < 3; k++) p[k] = (uint8_t)((p[k] * (255u - a) + c[k] * a + 127u) / 255u);
}

static uint32_t get_px(const mnas_figure *f, int x, int y)
{
    const uint8_t *p = f->rgb + ((size_t)y * (size_t)f->w + (size_t)x) * 3u;
    return ((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 8) | p[2];
}

static rect rect_and(rect a, rect b)
{
    rect r = {a.x0 > b.x0 ? a.x0 : b.x0, a.y0 > b.y0 ? a.y0 : b.y0, a.x1 < b.x1 ? a.x1 : b.x1,
              a.y1 < b.y1 ? a.y1 : b.y1};
    return r;
}

static void fill_rect(mnas_figure *f, rect clip, rect r, uint32_t rgb, unsigned a)
{
    r = rect_and(r, clip);
    for (int y = r.y0; y <= r.y1; y++)
        for (int x = r.x0; x <= r.x1; x++) put_px(f, x, y, rgb, a);
}

/* Coverage of a pixel whose centre is at distance d from a shape's centre
 * line or centre, for a shape reaching `half` pixels out: a one-pixel ramp
 * across the edge. */
static unsigned coverage(double half, double d)
{
    double c = half + 0.5 - d;
    if (c <= 0.0) return 0;
    if (c >= 1.0) return 255;
    return (unsigned)(c * 255.0 + 0.5);
}

/* ------------------------------------------------------------- text */

static int text_width(const char *s, size_t len, int scale)
{
    (void)s; /* fixed pitch */
    if (len == 0) return 0;
    if (len > MAX_TEXT_DRAWN) len = MAX_TEXT_DRAWN;
    return (int)len * GLYPH_ADV * scale - scale;
}

/* Draw len bytes of s with the top-left of the first glyph cell at (x, y).
 * vertical: rotated a quarter turn anticlockwise, reading upwards from
 * (x, y), which is then the bottom-left corner. */
static void draw_text(mnas_figure *f, rect clip, int x, int y, const char *s, size_t len,
                      uint32_t rgb, int scale, int vertical)
{
    if (len > MAX_TEXT_DRAWN) len = MAX_TEXT_DRAWN; /* the rest is off the figure */
    for (size_t i = 0; i < len; i++) {
        int along = (int)i * GLYPH_ADV * scale;
        for (int row = 0; row < GLYPH_H; row++) {
            unsigned bits = mnas__font_row((unsigned char)s[i], row);
            for (int col = 0; bits && col < GLYPH_W; col++) {
                if (!(bits & (1u << (GLYPH_W - 1 - col)))) continue;
                rect px;
                if (!vertical) {
                    px.x0 = x + along + col * scale;
                    px.y0 = y + row * scale;
                } else {
                    px.x0 = x + row * scale;
                    px.y0 = y - along - (col + 1) * scale + 1;
                }
                px.x1 = px.x0 + scale - 1;
                px.y1 = px.y0 + scale - 1;
                fill_rect(f, clip, px, rgb, 255u);
            }
        }
    }
}

/* Locale-free fixed-point formatting with `decimals` places; callers keep
 * |v| * 10^decimals below 1e15. */
static void format_fixed(char *buf, size_t cap, double v, int decimals)
{
    double r = fabs(v);
    for (int i = 0; i < decimals; i++) r *= 10.0;
    r = floor(r + 0.5);
    if (r > 1e15) r = 1e15;
    unsigned long long u = (unsigned long long)r;
    char digits[40];
    int nd = 0;
    do {
        digits[nd++] = (char)('0' + (int)(u % 10u));
        u /= 10u;
    } while (u && nd < 20);
    while (nd <= decimals && nd < 38) digits[nd++] = '0';
    size_t k = 0;
    if (v < 0 && r > 0 && cap > 1) buf[k++] = '-';
    for (int i = nd - 1; i >= 0 && k + 2 < cap; i--) {
        buf[k++] = digits[i];
        if (i == decimals && decimals > 0) buf[k++] = '.';
    }
    buf[k] = '\0';
}

/* ------------------------------------------------------------- ticks */

typedef struct ticks {
    int n;
    double v[MAX_TICKS];
    double step;
    int decimals; /* places after the point (of the mantissa when sci) */
    int sci;      /* labels as m.mm e<sci_exp> */
    int sci_exp;
} ticks;

static int decimals_for(double step)
{
    int d = 0;
    for (double s = step; s < 0.999999 && d < 15; s *= 10.0) d++;
    return d;
}

/* The next round step below step (1, 2, 5 times a power of ten). */
static double smaller_step(double step)
{
    double mag = pow(10.0, floor(log10(step) + 1e-9));
    double m = step / mag;
    return m > 4.0 ? 2.0 * mag : m > 1.5 ? mag : 0.5 * mag;
}

/* Round-number ticks (1, 2 or 5 times a power of ten) inside [lo, hi] on
 * an axis len_px long: about one per gap_px pixels, and at least three if
 * they can stay min_gap_px apart. Also how to label them. */
static void make_ticks(double lo, double hi, int len_px, int gap_px, int min_gap_px, ticks *t)
{
    memset(t, 0, sizeof *t);
    double span = hi - lo;
    if (!(span > 0.0) || !isfinite(span) || len_px <= 0) return;
    int target = len_px / gap_px;
    if (target < 2) target = 2;
    double raw = span / target;
    double mag = pow(10.0, floor(log10(raw)));
    double norm = raw / mag;
    double step = (norm < 1.5 ? 1.0 : norm < 3.0 ? 2.0 : norm < 7.0 ? 5.0 : 10.0) * mag;
    if (!(step > 0.0) || !isfinite(step)) return;
    double i0 = ceil(lo / step - 1e-9), i1 = floor(hi / step + 1e-9);
    for (int tries = 0; tries < 3 && i1 - i0 < 2.0; tries++) {
        double finer = smaller_step(step);
        if (finer / span * len_px < min_gap_px) break;
        step = finer;
        i0 = ceil(lo / step - 1e-9);
        i1 = floor(hi / step + 1e-9);
    }
    if (!(i1 - i0 < MAX_TICKS)) return; /* the span is below the precision of lo */
    t->step = step;
    for (double i = i0; i <= i1; i += 1.0) {
        double v = i * step;
        if (fabs(v) < step * 1e-9) v = 0.0;
        t->v[t->n++] = v;
    }
    double big = fmax(fabs(lo), fabs(hi));
    t->decimals = decimals_for(step);
    if (big >= 1e6 || big < 1e-3 || big * pow(10.0, t->decimals) >= 1e14) {
        t->sci = 1;
        t->sci_exp = (int)floor(log10(big));
        t->decimals = decimals_for(step / pow(10.0, t->sci_exp));
        if (t->decimals > 6) t->decimals = 6;
    }
}

static void format_tick(char *buf, size_t cap, const ticks *t, double v)
{
    if (!t->sci) {
        format_fixed(buf, cap, v, t->decimals);
        return;
    }
    if (v == 0.0 || cap < 16) {
        snprintf(buf, cap, "0");
        return;
    }
    format_fixed(buf, cap - 8, v / pow(10.0, t->sci_exp), t->decimals);
    size_t k = strlen(buf);
    snprintf(buf + k, cap - k, "e%d", t->sci_exp); /* the exponent has 3 digits at most */
}

/* ------------------------------------------------------------ layout */

void mnas__fig_layout(mnas_figure *f)
{
    int cw = f->w / f->cols, ch = f->h / f->rows;
    int s = f->text_scale;
    if (s == 0) {
        int m = cw < ch ? cw : ch;
        s = (m + 150) / 300;
        if (s < 1) s = 1;
        if (s > 4) s = 4;
    }
    f->scale = s;
    for (int i = 0; i < f->rows * f->cols; i++) {
        fig_panel *p = &f->panels[i];
        int r = i / f->cols, c = i % f->cols;
        p->cell.x0 = c * f->w / f->cols;
        p->cell.x1 = (c + 1) * f->w / f->cols - 1;
        p->cell.y0 = r * f->h / f->rows;
        p->cell.y1 = (r + 1) * f->h / f->rows - 1;
        /* Fixed margins, whatever the texts are, so panels of one figure
         * line up: title row on top; tick labels and x label below; y label
         * and six characters of tick labels on the left. */
        int top = 20 * s, bottom = 34 * s, left = 60 * s, right = 14 * s;
        p->frame.x0 = p->cell.x0 + left;
        p->frame.x1 = p->cell.x1 - right;
        p->frame.y0 = p->cell.y0 + top;
        p->frame.y1 = p->cell.y1 - bottom;
        p->compact = 0;
        if (p->frame.x1 - p->frame.x0 < 24 || p->frame.y1 - p->frame.y0 < 24) {
            p->compact = 1;
            p->frame.x0 = p->cell.x0 + 2;
            p->frame.x1 = p->cell.x1 - 2;
            p->frame.y0 = p->cell.y0 + 2;
            p->frame.y1 = p->cell.y1 - 2;
        }
    }
}

/* ------------------------------------------------------------ ranges */

static void auto_axis(const fig_panel *p, int axis, double out[2])
{
    int other = 1 - axis;
    double lo = INFINITY, hi = -INFINITY;
    for (size_t k = 0; k < p->ns; k++) {
        const series *s = &p->s[k];
        const double *v = axis == 0 ? s->x : s->y, *o = axis == 0 ? s->y : s->x;
        for (size_t i = 0; i < s->n; i++) {
            double a = v[i];
            if (!isfinite(a) || fabs(a) > AUTO_LIMIT) continue;
            if (p->fixed[other] && !(o[i] >= p->lim[other][0] && o[i] <= p->lim[other][1])) continue;
            if (a < lo) lo = a;
            if (a > hi) hi = a;
        }
    }
    if (lo > hi) {
        out[0] = 0.0;
        out[1] = 1.0;
        return;
    }
    double span = hi - lo;
    if (span <= fmax(fabs(lo), fabs(hi)) * 1e-12) {
        double d = lo == 0.0 ? 1.0 : fabs(lo) * 0.1;
        out[0] = lo - d;
        out[1] = hi + d;
        return;
    }
    out[0] = lo - 0.05 * span;
    out[1] = hi + 0.05 * span;
}

static void update_ranges(fig_panel *p)
{
    for (int axis = 0; axis < 2; axis++) {
        if (p->fixed[axis]) {
            p->range[axis][0] = p->lim[axis][0];
            p->range[axis][1] = p->lim[axis][1];
        } else {
            auto_axis(p, axis, p->range[axis]);
        }
    }
}
mapping mnas__fig_panel_mapping(const fig_panel *p)
{
    mapping m;
    m.xmin = p->range[0][0];
    m.ymin = p->range[1][0];
    m.x0 = p->frame.x0;
    m.y1 = p->frame.y1;
    m.sx = (p->frame.x1 - p->frame.x0) / (p->range[0][1] - p->range[0][0]);
    m.sy = (p->frame.y1 - p->frame.y0) / (p->range[1][1] - p->range[1][0]);
    return m;
}


/* ------------------------------------------------------------- lines */

/* Liang-Barsky: clip the segment to [xl, xh] x [yl, yh]; 0 if nothing is left. */
static int clip_segment(double *ax, double *ay, double *bx, double *by, double xl, double yl,
                        double xh, double yh)
{
    double dx = *bx - *ax, dy = *by - *ay, t0 = 0.0, t1 = 1.0;
    double p[4] = {-dx, dx, -dy, dy};
    double q[4] = {*ax - xl, xh - *ax, *ay - yl, yh - *ay};
    for (int i = 0; i < 4; i++) {
        if (p[i] == 0.0) {
            if (q[i] < 0.0) return 0;
            continue;
        }
        double t = q[i] / p[i];
        if (p[i] < 0.0) {
            if (t > t1) return 0;
            if (t > t0) t0 = t;
        } else {
            if (t < t0) return 0;
            if (t < t1) t1 = t;
        }
    }
    double x0 = *ax, y0 = *ay;
    *ax = x0 + t0 * dx;
    *ay = y0 + t0 * dy;
    *bx = x0 + t1 * dx;
    *by = y0 + t1 * dy;
    return 1;
}

/* Add the coverage of a round-capped segment (a capsule of half-width hw)
 * to the mask, keeping the largest coverage of each pixel so joints of a
 * polyline are not blended twice. bbox grows to the touched pixels. */
static void mask_segment(mnas_figure *f, const fig_panel *p, rect in, double ax, double ay, double bx,
                         double by, double hw, rect *bbox)
{
    double reach = hw + 1.0;
    if (!clip_segment(&ax, &ay, &bx, &by, in.x0 - reach, in.y0 - reach, in.x1 + reach,
                      in.y1 + reach))
        return;
    double dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
    int ylo = (int)floor(fmin(ay, by) - reach), yhi = (int)ceil(fmax(ay, by) + reach);
    if (ylo < in.y0) ylo = in.y0;
    if (yhi > in.y1) yhi = in.y1;
    for (int y = ylo; y <= yhi; y++) {
        /* the part of the segment within reach of this row bounds the columns */
        double tl = 0.0, th = 1.0;
        if (fabs(dy) > 1e-12) {
            double t1 = (y - reach - ay) / dy, t2 = (y + reach - ay) / dy;
            tl = fmax(0.0, fmin(t1, t2));
            th = fmin(1.0, fmax(t1, t2));
            if (tl > th) tl = th = (t1 < 0.0 && t2 < 0.0) ? 0.0 : 1.0;
        }
        double xa = ax + tl * dx, xb = ax + th * dx;
        int xlo = (int)floor(fmin(xa, xb) - reach), xhi = (int)ceil(fmax(xa, xb) + reach);
        if (xlo < in.x0) xlo = in.x0;
        if (xhi > in.x1) xhi = in.x1;
        for (int x = xlo; x <= xhi; x++) {
            double t = len2 > 0.0 ? ((x - ax) * dx + (y - ay) * dy) / len2 : 0.0;
            if (t < 0.0) t = 0.0;
            if (t > 1.0) t = 1.0;
            double ex = x - (ax + t * dx), ey = y - (ay + t * dy);
            unsigned a = coverage(hw, sqrt(ex * ex + ey * ey));
            if (!a) continue;
            uint8_t *m = &f->mask[(size_t)(y - p->cell.y0) * (size_t)f->mask_w + (size_t)(x - p->cell.x0)];
            if (a > *m) *m = (uint8_t)a;
            if (x < bbox->x0) bbox->x0 = x;
            if (x > bbox->x1) bbox->x1 = x;
            if (y < bbox->y0) bbox->y0 = y;
            if (y > bbox->y1) bbox->y1 = y;
        }
    }
}

static void draw_line_series(mnas_figure *f, const fig_panel *p, rect in, const mapping *m,
                             const series *s)
{
    rect bbox = {in.x1 + 1, in.y1 + 1, in.x0 - 1, in.y0 - 1};
    double hw = s->size * 0.5;
    for (size_t i = 0; i + 1 < s->n; i++) {
        double ax = map_x(m, s->x[i]), ay = map_y(m, s->y[i]);
        double bx = map_x(m, s->x[i + 1]), by = map_y(m, s->y[i + 1]);
        /* NaN/Inf data, or positions beyond double range, break the line */
        if (!isfinite(ax) || !isfinite(ay) || !isfinite(bx) || !isfinite(by)) continue;
        mask_segment(f, p, in, ax, ay, bx, by, hw, &bbox);
    }
    for (int y = bbox.y0; y <= bbox.y1; y++) {
        uint8_t *row = &f->mask[(size_t)(y - p->cell.y0) * (size_t)f->mask_w];
        for (int x = bbox.x0; x <= bbox.x1; x++) {
            uint8_t *a = &row[x - p->cell.x0];
            if (!*a) continue;
            put_px(f, x, y, s->rgb, *a);
            *a = 0;
        }
    }
}

static void draw_disc(mnas_figure *f, rect clip, double cx, double cy, double r, uint32_t rgb)
{
    rect b = {(int)floor(cx - r - 1.0), (int)floor(cy - r - 1.0), (int)ceil(cx + r + 1.0),
              (int)ceil(cy + r + 1.0)};
    b = rect_and(b, clip);
    for (int y = b.y0; y <= b.y1; y++)
        for (int x = b.x0; x <= b.x1; x++) {
            unsigned a = coverage(r, hypot(x - cx, y - cy));
            if (a) put_px(f, x, y, rgb, a);
        }
}

static void draw_point_series(mnas_figure *f, rect in, const mapping *m, const series *s)
{
    double lim = 4.0 * MNAS_FIGURE_MAX_PIXELS;
    for (size_t i = 0; i < s->n; i++) {
        double cx = map_x(m, s->x[i]), cy = map_y(m, s->y[i]);
        if (!isfinite(cx) || !isfinite(cy) || fabs(cx) > lim || fabs(cy) > lim) continue;
        draw_disc(f, in, cx, cy, s->size, s->rgb);
    }
}

/* ------------------------------------------------------------ legend */

static int is_ink(uint32_t c) { return c != COL_WHITE && c != COL_GRID; }

static void draw_legend(mnas_figure *f, const fig_panel *p, rect in)
{
    if (p->legend == MNAS_LEGEND_NONE) return;
    int s = f->scale;
    int nlab = 0;
    size_t maxlen = 0;
    for (size_t k = 0; k < p->ns; k++)
        if (p->s[k].label) {
            nlab++;
            size_t len = strlen(p->s[k].label);
            if (len > maxlen) maxlen = len;
        }
    if (nlab == 0) return;
    int pad = 4 * s, inset = 4 * s, sample_w = 16 * s, rowh = GLYPH_H * s + 3 * s;
    int avail_w = in.x1 - in.x0 + 1 - 2 * inset, avail_h = in.y1 - in.y0 + 1 - 2 * inset;
    int chars_fit = (avail_w - 2 * pad - sample_w - 4 * s + s) / (GLYPH_ADV * s);
    if (chars_fit < 1) return;
    if (maxlen > (size_t)chars_fit) maxlen = (size_t)chars_fit;
    int rows_fit = (avail_h - 2 * pad + 3 * s) / rowh;
    if (rows_fit < 1) return;
    int nrows = nlab < rows_fit ? nlab : rows_fit;
    int bw = 2 * pad + sample_w + 4 * s + text_width(NULL, maxlen, s);
    int bh = 2 * pad + nrows * rowh - 3 * s;

    rect cand[4]; /* upper right, upper left, lower left, lower right */
    cand[0] = (rect){in.x1 - inset - bw + 1, in.y0 + inset, in.x1 - inset, in.y0 + inset + bh - 1};
    cand[1] = (rect){in.x0 + inset, in.y0 + inset, in.x0 + inset + bw - 1, in.y0 + inset + bh - 1};
    cand[2] = (rect){in.x0 + inset, in.y1 - inset - bh + 1, in.x0 + inset + bw - 1, in.y1 - inset};
    cand[3] = (rect){in.x1 - inset - bw + 1, in.y1 - inset - bh + 1, in.x1 - inset, in.y1 - inset};
    int pick = 0;
    switch (p->legend) {
    case MNAS_LEGEND_UPPER_RIGHT: pick = 0; break;
    case MNAS_LEGEND_UPPER_LEFT: pick = 1; break;
    case MNAS_LEGEND_LOWER_LEFT: pick = 2; break;
    case MNAS_LEGEND_LOWER_RIGHT: pick = 3; break;
    default: {
        /* AUTO: the corner hiding the fewest drawn pixels (ties: in the order above) */
        long best = -1;
        for (int c = 0; c < 4; c++) {
            rect b = rect_and(cand[c], in);
            long ink = 0;
            for (int y = b.y0; y <= b.y1; y++)
                for (int x = b.x0; x <= b.x1; x++) ink += is_ink(get_px(f, x, y));
            if (best < 0 || ink < best) {
                best = ink;
                pick = c;
            }
        }
    }
    }
    rect box = rect_and(cand[pick], in);
    fill_rect(f, box, box, COL_WHITE, 217u);
    fill_rect(f, box, (rect){box.x0, box.y0, box.x1, box.y0}, COL_LEGEND_EDGE, 255u);
    fill_rect(f, box, (rect){box.x0, box.y1, box.x1, box.y1}, COL_LEGEND_EDGE, 255u);
    fill_rect(f, box, (rect){box.x0, box.y0, box.x0, box.y1}, COL_LEGEND_EDGE, 255u);
    fill_rect(f, box, (rect){box.x1, box.y0, box.x1, box.y1}, COL_LEGEND_EDGE, 255u);

    int row = 0;
    for (size_t k = 0; k < p->ns && row < nrows; k++) {
        const series *se = &p->s[k];
        if (!se->label) continue;
        int ty = box.y0 + pad + row * rowh;     /* top of the text cell */
        double cy = ty + 4.0 * s + (s - 1) * 0.5; /* middle of the capitals */
        int sx = box.x0 + pad;
        if (se->kind == SERIES_LINE) {
            double hw = fmin(se->size * 0.5, GLYPH_H * s * 0.5);
            for (int x = sx; x < sx + sample_w; x++)
                for (int y = (int)floor(cy - hw - 1.0); y <= (int)ceil(cy + hw + 1.0); y++) {
                    if (x < box.x0 || x > box.x1 || y < box.y0 || y > box.y1) continue;
                    unsigned a = coverage(hw, fabs(y - cy));
                    if (a) put_px(f, x, y, se->rgb, a);
                }
        } else {
            double r = fmin(se->size, GLYPH_H * s * 0.5);
            draw_disc(f, box, sx + (sample_w - 1) * 0.5, cy, r, se->rgb);
        }
        size_t len = strlen(se->label);
        if (len > maxlen) len = maxlen;
        draw_text(f, box, sx + sample_w + 4 * s, ty, se->label, len, COL_TEXT, s, 0);
        row++;
    }
}

/* ------------------------------------------------------------ panels */

void mnas__fig_render_panel(mnas_figure *f, int index)
{
    fig_panel *p = &f->panels[index];
    int s = f->scale;
    rect cell = p->cell, fr = p->frame;
    rect in = {fr.x0 + 1, fr.y0 + 1, fr.x1 - 1, fr.y1 - 1};
    fill_rect(f, cell, cell, COL_WHITE, 255u);
    update_ranges(p);
    mapping m = mnas__fig_panel_mapping(p);

    ticks tx, ty;
    tx.n = ty.n = 0;
    if (!p->compact) {
        /* x labels need room for a few characters side by side, y labels
         * for one text line each */
        make_ticks(p->range[0][0], p->range[0][1], fr.x1 - fr.x0, 50 * s, 32 * s, &tx);
        make_ticks(p->range[1][0], p->range[1][1], fr.y1 - fr.y0, 35 * s, 16 * s, &ty);
        for (int i = 0; i < tx.n; i++) {
            int x = (int)lround(map_x(&m, tx.v[i]));
            fill_rect(f, in, (rect){x, in.y0, x, in.y1}, COL_GRID, 255u);
        }
        for (int i = 0; i < ty.n; i++) {
            int y = (int)lround(map_y(&m, ty.v[i]));
            fill_rect(f, in, (rect){in.x0, y, in.x1, y}, COL_GRID, 255u);
        }
    }

    for (size_t k = 0; k < p->ns; k++) {
        if (p->s[k].kind == SERIES_LINE)
            draw_line_series(f, p, in, &m, &p->s[k]);
        else
            draw_point_series(f, in, &m, &p->s[k]);
    }

    fill_rect(f, cell, (rect){fr.x0, fr.y0, fr.x1, fr.y0}, COL_FRAME, 255u);
    fill_rect(f, cell, (rect){fr.x0, fr.y1, fr.x1, fr.y1}, COL_FRAME, 255u);
    fill_rect(f, cell, (rect){fr.x0, fr.y0, fr.x0, fr.y1}, COL_FRAME, 255u);
    fill_rect(f, cell, (rect){fr.x1, fr.y0, fr.x1, fr.y1}, COL_FRAME, 255u);
    if (p->compact) return;

    int tick = 4 * s;
    char buf[48];
    for (int i = 0; i < tx.n; i++) {
        int x = (int)lround(map_x(&m, tx.v[i]));
        fill_rect(f, cell, (rect){x - (s - 1) / 2, fr.y1 + 1, x + s / 2, fr.y1 + tick}, COL_FRAME, 255u);
        format_tick(buf, sizeof buf, &tx, tx.v[i]);
        size_t len = strlen(buf);
        draw_text(f, cell, x - text_width(buf, len, s) / 2, fr.y1 + tick + 2 * s, buf, len, COL_TEXT,
                  s, 0);
    }
    for (int i = 0; i < ty.n; i++) {
        int y = (int)lround(map_y(&m, ty.v[i]));
        fill_rect(f, cell, (rect){fr.x0 - tick, y - (s - 1) / 2, fr.x0 - 1, y + s / 2}, COL_FRAME, 255u);
        format_tick(buf, sizeof buf, &ty, ty.v[i]);
        size_t len = strlen(buf);
        draw_text(f, cell, fr.x0 - tick - 2 * s - text_width(buf, len, s), y - 4 * s - s / 2, buf, len,
                  COL_TEXT, s, 0);
    }
    if (p->title) {
        size_t len = strlen(p->title);
        int w = text_width(p->title, len, s);
        int x = (fr.x0 + fr.x1 + 1) / 2 - w / 2;
        if (x < cell.x0 + 2 * s) x = cell.x0 + 2 * s;
        draw_text(f, cell, x, cell.y0 + 5 * s, p->title, len, COL_TEXT, s, 0);
    }
    if (p->xlabel) {
        size_t len = strlen(p->xlabel);
        int w = text_width(p->xlabel, len, s);
        int x = (fr.x0 + fr.x1 + 1) / 2 - w / 2;
        if (x < cell.x0 + 2 * s) x = cell.x0 + 2 * s;
        draw_text(f, cell, x, fr.y1 + tick + 2 * s + GLYPH_H * s + 4 * s, p->xlabel, len, COL_TEXT, s, 0);
    }
    if (p->ylabel) {
        size_t len = strlen(p->ylabel);
        int w = text_width(p->ylabel, len, s);
        int y = (fr.y0 + fr.y1 + 1) / 2 + w / 2;
        if (y > cell.y1 - 2 * s) y = cell.y1 - 2 * s;
        draw_text(f, cell, cell.x0 + 4 * s, y, p->ylabel, len, COL_TEXT, s, 1);
    }
    draw_legend(f, p, in);
}

void mnas__fig_render_all(mnas_figure *f)
{
    for (int i = 0; i < f->rows * f->cols; i++) mnas__fig_render_panel(f, i);
}

