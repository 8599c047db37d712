#!/usr/bin/python3
"""Build the real image datasets libmnas is tried on, offline, from Debian
packages only (run with /usr/bin/python3; needs python3-pil for glyphs).

  /usr/bin/python3 scripts/build_datasets.py [--out DIR] [--seed N] [--only fashion|glyphs]

Into DIR (default $XDG_CACHE_HOME/mnas-datasets, else <repo>/build/datasets,
both outside git):

  fashion-mnist/   symbolic links to the IDX gzip files of the Debian package
                   dataset-fashion-mnist (train/t10k images and labels); the
                   library reads them directly (mnas_image_dataset_load_idx).
  glyphs/          an Omniglot-style set: one class folder per character
                   (Latin, Greek, Cyrillic, Armenian, Georgian, Hebrew,
                   Devanagari, Cherokee, Runic, ... as far as the installed
                   fonts cover them), each image one "drawer" = one font plus
                   a small random affine jitter; 28x28 8-bit grey PNG, black
                   ink on white. Folder names are <script>_<codepoint>.
  glyphs/manifest.json  what was built (classes, images, fonts, seed, digest).

Deterministic: the same seed, fonts and Pillow version give the same files
(per class a random.Random seeded with "<seed>:<codepoint>"). Missing Debian
packages are named; --install runs apt-get for them (root).

Fonts' licences allow rendering glyphs into images: DejaVu (Bitstream Vera
licence / public domain changes), GNU FreeFont (GPLv3 with the font
exception), Liberation (SIL OFL 1.1), Noto (SIL OFL 1.1). The images are
derived renderings and are never committed to the repository.
"""

import argparse
import glob
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PACKAGES = ["dataset-fashion-mnist", "python3-pil", "fonts-dejavu-core", "fonts-freefont-ttf",
            "fonts-liberation2", "fonts-noto-core"]
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]

# (script, first code point, last code point, code points to skip)
RANGES = [
    ("Latin", 0x41, 0x5A, ()), ("Latin", 0x61, 0x7A, ()),
    ("Digit", 0x30, 0x39, ()),
    ("Greek", 0x391, 0x3A9, (0x3A2,)), ("Greek", 0x3B1, 0x3C9, ()),
    ("Cyrillic", 0x410, 0x44F, ()),
    ("Armenian", 0x531, 0x556, ()), ("Armenian", 0x561, 0x586, ()),
    ("Hebrew", 0x5D0, 0x5EA, ()),
    ("Devanagari", 0x905, 0x914, ()), ("Devanagari", 0x915, 0x939, ()),
    ("Georgian", 0x10D0, 0x10F0, ()),
    ("Cherokee", 0x13A0, 0x13F4, ()),
    ("Runic", 0x16A0, 0x16EA, ()),
    ("Ethiopic", 0x1200, 0x1247, ()),
    ("CanadianSyllabics", 0x1401, 0x144A, ()),
    ("Tifinagh", 0x2D30, 0x2D65, ()),
]
# Noto families worth trying per script (the rest of Noto is not needed).
NOTO_PREFIXES = ("NotoSans-", "NotoSerif-", "NotoSansMono-", "NotoSansDisplay-", "NotoSerifDisplay-",
                 "NotoSansArmenian-", "NotoSerifArmenian-", "NotoSansGeorgian-", "NotoSerifGeorgian-",
                 "NotoSansHebrew-", "NotoSerifHebrew-", "NotoRashiHebrew-", "NotoSansDevanagari-",
                 "NotoSerifDevanagari-", "NotoSansCherokee-", "NotoSansRunic-", "NotoSansEthiopic-",
                 "NotoSerifEthiopic-", "NotoSansCanadianAboriginal-", "NotoSansTifinagh-")
FONT_STYLES = ("Regular", "Bold", "Italic", "Oblique", "Book", "Medium")


def default_out():
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return os.path.join(xdg, "mnas-datasets")
    return os.path.join(REPO, "build", "datasets")


def missing_packages():
    out = []
    for p in PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", p],
                           capture_output=True, text=True)
        if r.stdout.strip() != "installed":
            out.append(p)
    return out


def build_fashion(out):
    dst = os.path.join(out, "fashion-mnist")
    os.makedirs(dst, exist_ok=True)
    for f in FASHION_FILES:
        src = os.path.join(FASHION_DIR, f)
        if not os.path.exists(src):
            sys.exit("build_datasets: %s is missing: apt-get install dataset-fashion-mnist" % src)
        link = os.path.join(dst, f)
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(src, link)
    return {"path": dst, "files": FASHION_FILES, "source": FASHION_DIR}


def font_files():
    files = []
    for d in ("dejavu", "freefont", "liberation2", "liberation"):
        files += glob.glob("/usr/share/fonts/truetype/%s/*.ttf" % d)
    for f in glob.glob("/usr/share/fonts/truetype/noto/*.ttf"):
        if os.path.basename(f).startswith(NOTO_PREFIXES):
            files.append(f)
    files = [f for f in files
             if any(s in os.path.basename(f) for s in FONT_STYLES) or "-" not in os.path.basename(f)]
    files = [f for f in files if "Math" not in f and "ExtraLight" not in f]
    return sorted(set(files))


def render(font, ch, canvas=64):
    """Grey image of one character, black on white, centred; None if the
    font has no glyph for it (empty, or the same as its .notdef box)."""
    from PIL import Image, ImageDraw
    img = Image.new("L", (canvas, canvas), 255)
    d = ImageDraw.Draw(img)
    box = d.textbbox((0, 0), ch, font=font)
    w, h = box[2] - box[0], box[3] - box[1]
    if w <= 0 or h <= 0:
        return None
    d.text(((canvas - w) / 2 - box[0], (canvas - h) / 2 - box[1]), ch, font=font, fill=0)
    return img


def build_glyphs(out, seed, per_class, size, min_fonts):
    from PIL import Image, ImageFont
    t0 = time.time()
    root = os.path.join(out, "glyphs")
    if os.path.isdir(root):
        shutil.rmtree(root)
    os.makedirs(root)
    fonts = []
    for path in font_files():
        try:
            f = ImageFont.truetype(path, 36)
        except OSError:
            continue
        notdef = render(f, "\uffff")
        fonts.append((path, f, notdef.tobytes() if notdef is not None else None))
    classes = 0
    images = 0
    used_fonts = set()
    digest = hashlib.sha256()
    per_script = {}
    for script, lo, hi, skip in RANGES:
        for cp in range(lo, hi + 1):
            if cp in skip:
                continue
            ch = chr(cp)
            glyphs = []
            for path, f, notdef in fonts:
                img = render(f, ch)
                if img is None or (notdef is not None and img.tobytes() == notdef):
                    continue
                glyphs.append((path, img))
            if len(glyphs) < min_fonts:
                continue
            name = "%s_%05X" % (script, cp)
            cdir = os.path.join(root, name)
            os.makedirs(cdir)
            rng = random.Random("%d:%d" % (seed, cp))
            for i in range(per_class):
                path, img = glyphs[i % len(glyphs)]
                used_fonts.add(os.path.basename(path))
                # A "drawer": the font plus a small affine jitter.
                angle = rng.uniform(-12, 12)
                shear = rng.uniform(-0.15, 0.15)
                scale = rng.uniform(0.85, 1.1)
                dx, dy = rng.uniform(-3, 3), rng.uniform(-3, 3)
                j = img.rotate(angle, resample=Image.BILINEAR, fillcolor=255)
                c = j.size[0] / 2
                j = j.transform(j.size, Image.AFFINE,
                                (1 / scale, shear / scale, c - c / scale - shear * c / scale + dx,
                                 0, 1 / scale, c - c / scale + dy),
                                resample=Image.BILINEAR, fillcolor=255)
                # Crop to the ink with a margin, square, then shrink.
                inv = j.point(lambda v: 255 - v)
                bbox = inv.getbbox() or (0, 0, j.size[0], j.size[1])
                side = max(bbox[2] - bbox[0], bbox[3] - bbox[1]) + 8
                cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
                sq = j.crop((int(cx - side / 2), int(cy - side / 2),
                             int(cx - side / 2) + side, int(cy - side / 2) + side))
                sq = sq.resize((size, size), Image.BOX)
                fn = os.path.join(cdir, "%02d.png" % i)
                sq.save(fn, "PNG", optimize=False)
                with open(fn, "rb") as fh:
                    digest.update(fh.read())
                images += 1
            classes += 1
            per_script[script] = per_script.get(script, 0) + 1
    info = {"path": root, "classes": classes, "images": images, "per_class": per_class,
            "size": size, "seed": seed, "fonts": sorted(used_fonts), "per_script": per_script,
            "sha256": digest.hexdigest(), "seconds": round(time.time() - t0, 1)}
    with open(os.path.join(root, "..", "glyphs-manifest.json"), "w") as fh:
        json.dump(info, fh, indent=1, sort_keys=True)
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=default_out(), help="output folder (default %(default)s)")
    ap.add_argument("--seed", type=int, default=1, help="jitter seed (default 1)")
    ap.add_argument("--only", choices=("fashion", "glyphs"), help="build one dataset only")
    ap.add_argument("--per-class", type=int, default=20, help="images per glyph class (default 20)")
    ap.add_argument("--size", type=int, default=28, help="glyph image side (default 28)")
    ap.add_argument("--min-fonts", type=int, default=2,
                    help="fonts that must have a character for it to be a class (default 2)")
    ap.add_argument("--install", action="store_true", help="apt-get install missing packages")
    a = ap.parse_args()
    miss = missing_packages()
    if miss and a.install:
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends"] + miss, check=True)
        miss = missing_packages()
    if miss:
        print("build_datasets: missing Debian packages: %s\n  apt-get install %s"
              % (" ".join(miss), " ".join(miss)), file=sys.stderr)
    os.makedirs(a.out, exist_ok=True)
    if a.only in (None, "fashion"):
        info = build_fashion(a.out)
        print("fashion-mnist: %s -> %s" % (info["source"], info["path"]))
    if a.only in (None, "glyphs"):
        try:
            import PIL  # noqa: F401
        except ImportError:
            sys.exit("build_datasets: python3-pil is needed for the glyphs (apt-get install python3-pil)")
        info = build_glyphs(a.out, a.seed, a.per_class, a.size, a.min_fonts)
        print("glyphs: %d classes, %d images of %dx%d from %d fonts in %.1f s -> %s (sha256 %s)"
              % (info["classes"], info["images"], a.size, a.size, len(info["fonts"]),
                 info["seconds"], info["path"], info["sha256"][:16]))
        print("  per script: %s" % ", ".join("%s %d" % kv for kv in sorted(info["per_script"].items())))


if __name__ == "__main__":
    main()
