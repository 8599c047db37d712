#!/usr/bin/python3
"""Sizes of the C sources under lib/: the largest files and the longest
functions (from the line of a definition's signature to its closing brace
in column 0, the layout every file in lib/ uses).

usage: scripts/code_size.py [root] [--top N]"""
import glob
import os
import re
import sys


def functions(path):
    """(lines, name) of every function definition in path."""
    lines = open(path, encoding="utf-8").read().split("\n")
    out, start = [], None
    for i, line in enumerate(lines):
        if start is None and re.match(r"^[A-Za-z_][^;]*\(", line) and not line.startswith(("typedef", "enum")):
            start = i
            if line.endswith(";"):  # a declaration
                start = None
                continue
        if start is not None and line == "}":
            m = re.search(r"(\w+)\s*\(", lines[start])
            out.append((i - start + 1, m.group(1) if m else "?"))
            start = None
    return out


def main(argv):
    top = 5
    if "--top" in argv:
        k = argv.index("--top")
        top = int(argv[k + 1])
        del argv[k:k + 2]
    root = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    root = os.path.abspath(root)
    files = sorted(glob.glob(os.path.join(root, "lib", "**", "*.[ch]"), recursive=True))
    sizes = sorted(((sum(1 for _ in open(f, encoding="utf-8")), os.path.relpath(f, root)) for f in files),
                   reverse=True)
    funcs = sorted(((n, os.path.relpath(f, root), name) for f in files if f.endswith(".c")
                    for n, name in functions(f)), reverse=True)
    print("largest files:")
    for n, f in sizes[:top]:
        print("  %5d %s" % (n, f))
    print("longest functions:")
    for n, f, name in funcs[:top]:
        print("  %5d %s %s" % (n, f, name))


if __name__ == "__main__":
    main(sys.argv)
