"""The API reference's enum values agree with the code that mirrors them.

Reads the Doxygen XML of the reference (built by the `docs` target) and
checks that every public enum value has an explicit value (enums are
append-only with explicit values), that the status codes and the other enum
mirrors of the Python bindings hold the same numbers, and that each status
value carries a description. Usage: docs_enum_values.py XML_DIR SOURCE_DIR.
Exit 77 (skipped) without the XML."""
import os
import re
import sys
import xml.etree.ElementTree as ET

xml_dir, src = sys.argv[1], sys.argv[2]
if not os.path.isdir(xml_dir):
    print("no Doxygen XML in %s (doxygen missing): skipped" % xml_dir)
    sys.exit(77)
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


values = {}      # enum value name -> int
briefs = {}      # enum value name -> brief text
enums = {}       # enum name -> {value: [names]}
for name in sorted(os.listdir(xml_dir)):
    if not name.endswith("_8h.xml"):
        continue
    root = ET.parse(os.path.join(xml_dir, name)).getroot()
    for en in root.iter("memberdef"):
        if en.get("kind") != "enum":
            continue
        seen = enums.setdefault(en.findtext("name") or "?", {})
        for ev in en.findall("enumvalue"):
            m = re.fullmatch(r"=\s*(-?\d+)", (ev.findtext("initializer") or "").strip())
            if m:
                seen.setdefault(int(m.group(1)), []).append(ev.findtext("name"))
    for ev in root.iter("enumvalue"):
        n = ev.findtext("name")
        init = (ev.findtext("initializer") or "").strip()
        m = re.fullmatch(r"=\s*(-?\d+)", init)
        if n.startswith("MNAS_"):
            check(m is not None, "%s has an explicit value in the reference (got %r)" % (n, init))
        if m:
            values[n] = int(m.group(1))
            briefs[n] = "".join((ev.find("briefdescription") or ET.Element("x")).itertext()).strip()

check(len(values) > 20, "the reference lists the public enums (found %d values)" % len(values))

# The status codes: the reference, the header text and the Python mirror.
with open(os.path.join(src, "include", "mnas", "core.h")) as f:
    header = dict((k, int(v)) for k, v in re.findall(r"\b(MNAS_(?:OK|E_[A-Z]+))\s*=\s*(-?\d+)", f.read()))
with open(os.path.join(src, "bindings", "python", "mnas", "errors.py")) as f:
    py = dict(("MNAS_" + k, int(v)) for k, v in re.findall(r"^((?:OK|E_[A-Z]+)) = (-?\d+)$", f.read(), re.M))
for n, v in header.items():
    check(values.get(n) == v, "%s = %d in core.h, %r in the reference" % (n, v, values.get(n)))
    check(py.get(n) == v, "%s = %d in core.h, %r in bindings/python/mnas/errors.py" % (n, v, py.get(n)))
    if n != "MNAS_OK":
        check(briefs.get(n), "%s is described in the reference" % n)
check(set(py) == set(header), "errors.py mirrors exactly the status codes of core.h")

# The values of one enum are distinct (append-only lists never reuse one).
for enum, vs in enums.items():
    for v, names in vs.items():
        check(len(names) == 1, "distinct values in %s: %r share %d" % (enum, names, v))
check(len(enums) >= 10, "the reference lists the public enums (found %d)" % len(enums))

if failures:
    print("%d failure(s)" % len(failures))
    sys.exit(1)
print("docs_enum_values: %d enum values checked" % len(values))
