"""The option structs mirrored in mnas/_structs.py match the headers: field
order, offsets, sizes and the ..._INIT defaults.

With a C compiler at hand (cc/gcc/clang), a small program built against
include/mnas prints the real layout and defaults; without one, the sizes and
offsets are checked against the LP64 layout computed by hand from the
headers. Either way the library itself accepts the structs (it checks
struct_size)."""

import ctypes
import os
import shutil
import subprocess
import tempfile
import unittest

from mnas_test_util import REPO, mnas
from mnas import _structs

HEADER_DIR = os.path.join(REPO, "include")

# LP64 (x86-64, aarch64 Linux): (sizeof, [offsets of the fields in order]).
LP64 = {
    "mnas_ctx_options": (64, [0, 8, 16, 24, 32, 40, 48, 56]),
    "mnas_gradcheck_options": (56, [0, 8, 16, 24, 32, 40, 48]),
    "mnas_optim_options": (64, [0, 8, 16, 24, 32, 40, 48, 56]),
    "mnas_regression_options": (24, [0, 8, 12, 16]),
    "mnas_image_load_options": (40, [0, 8, 12, 16, 20, 24, 32]),
    "mnas_image_split_options": (56, [0, 8, 16, 24, 32, 40, 48]),
    "mnas_fewshot_options": (24, [0, 8, 12, 16]),
    "mnas_inner_options": (40, [0, 8, 16, 24, 32]),
    "mnas_learner_options": (
        192, [0, 8, 12, 16, 24, 32, 40, 44, 48, 56, 64, 68, 72, 76,
              80, 88, 96, 104, 108, 112, 116, 120, 124, 128, 136, 140, 144, 148, 152, 156, 160, 168, 172, 176, 184]),
}


def _compiler():
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return shutil.which(cc)
    return None


def _c_program():
    lines = ["#include <stddef.h>", "#include <stdio.h>", "#include <mnas/core.h>",
             "#include <mnas/autodiff.h>", "#include <mnas/nn.h>", "#include <mnas/data.h>",
             "#include <mnas/meta.h>", "int main(void) {"]
    for cname, py in _structs.ALL.items():
        init = cname.upper() + "_INIT"
        lines.append("  { %s v = %s; (void)v;" % (cname, init))
        lines.append('    printf("%s sizeof %%zu\\n", sizeof(%s));' % (cname, cname))
        for field, ctype in py._fields_:
            lines.append('    printf("%s.%s offset %%zu size %%zu\\n", offsetof(%s, %s), sizeof v.%s);'
                         % (cname, field, cname, field, field))
            if field == "struct_size":
                continue
            if ctype in (ctypes.c_double,):
                lines.append('    printf("%s.%s value %%.17g\\n", (double)v.%s);' % (cname, field, field))
            elif ctype is ctypes.c_void_p:
                lines.append('    printf("%s.%s value %%d\\n", v.%s != NULL);' % (cname, field, field))
            else:
                lines.append('    printf("%s.%s value %%llu\\n", (unsigned long long)v.%s);'
                             % (cname, field, field))
        lines.append("  }")
    lines.append("  return 0;\n}")
    return "\n".join(lines)


class TestLayout(unittest.TestCase):
    def test_against_the_compiler(self):
        cc = _compiler()
        if cc is None:
            self.skipTest("no C compiler")
        if not os.path.isfile(os.path.join(HEADER_DIR, "mnas", "meta.h")):
            self.skipTest("headers not found")
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "layout.c")
            exe = os.path.join(d, "layout")
            with open(src, "w") as f:
                f.write(_c_program())
            r = subprocess.run([cc, "-std=c11", "-I", HEADER_DIR, src, "-o", exe],
                               capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                self.fail("layout program does not compile (a header changed?):\n" + r.stderr)
            out = subprocess.run([exe], capture_output=True, text=True, timeout=60).stdout
        facts = {}
        for line in out.splitlines():
            key, what, value, *rest = line.split()
            facts[(key, what)] = value
            if rest:
                facts[(key, rest[0])] = rest[1]
        for cname, py in _structs.ALL.items():
            self.assertEqual(int(facts[(cname, "sizeof")]), ctypes.sizeof(py),
                             "%s: C sizeof differs (did the header grow?)" % cname)
            defaults = py.new()
            for field, ctype in py._fields_:
                key = "%s.%s" % (cname, field)
                self.assertEqual(int(facts[(key, "offset")]), getattr(py, field).offset, key)
                self.assertEqual(int(facts[(key, "size")]), getattr(py, field).size, key)
                if field == "struct_size":
                    continue
                got = getattr(defaults, field)
                want = facts[(key, "value")]
                if ctype is ctypes.c_double:
                    self.assertEqual(got, float(want), key)
                elif ctype is ctypes.c_void_p:
                    self.assertEqual(got is not None, want == "1", key)
                else:
                    self.assertEqual(got, int(want), key)

    @unittest.skipUnless(ctypes.sizeof(ctypes.c_void_p) == 8 and ctypes.sizeof(ctypes.c_long) == 8,
                         "not an LP64 platform")
    def test_lp64_layout(self):
        for cname, (size, offsets) in LP64.items():
            py = _structs.ALL[cname]
            self.assertEqual(ctypes.sizeof(py), size, cname)
            self.assertEqual([getattr(py, f).offset for f, _ in py._fields_], offsets, cname)

    def test_struct_size_is_set(self):
        for py in _structs.ALL.values():
            s = py.new()
            self.assertEqual(s.struct_size, ctypes.sizeof(py))
            self.assertEqual(py._fields_[0][0], "struct_size")
        with self.assertRaises(AttributeError):
            _structs.LearnerOptions.new(no_such_option=1)

    def test_library_accepts_the_structs(self):
        with mnas.Context() as ctx:
            # mnas_regression_options must be exactly this version's size
            mnas.regression_task(ctx, 1, 0)
            o = _structs.RegressionOptions.new()
            o.struct_size = 4
            from mnas._lib import C
            self.assertIsNone(C.mnas_regression_task(ctx._ptr, ctypes.byref(o), 1, 0, -1))
            self.assertIn("struct_size", ctx.last_error)


if __name__ == "__main__":
    unittest.main()
