"""Loading libmnas: search order, the major-version check, the function table."""

import ctypes
import os
import subprocess
import sys
import unittest

from mnas_test_util import REPO, mnas, subprocess_env
from mnas import _lib


class _FakeFunction:
    def __init__(self, value):
        self.value = value
        self.argtypes = None
        self.restype = None

    def __call__(self, *args):
        return self.value


class _LibraryWithout:
    """A stand-in CDLL: the real library minus one function."""

    def __init__(self, real, missing):
        self._real = real
        self._missing = missing

    def __getattr__(self, name):
        if name == self._missing:
            raise AttributeError(name)
        return getattr(self._real, name)


def _run(code, **env):
    return subprocess.run([sys.executable, "-c", code], env=subprocess_env(**env),
                          capture_output=True, text=True, timeout=60)


class TestLoading(unittest.TestCase):
    def test_loaded_and_version(self):
        path = mnas.loaded_path()
        self.assertIsNotNone(path)
        if os.environ.get("MNAS_LIBRARY"):
            self.assertEqual(os.path.realpath(path), os.path.realpath(os.environ["MNAS_LIBRARY"]))
        self.assertEqual(mnas.version_number() // 10000, mnas.EXPECTED_MAJOR)
        major, minor, patch = (int(x) for x in mnas.version().split("."))
        self.assertEqual(mnas.version_number(), major * 10000 + minor * 100 + patch)

    def test_every_table_entry_is_bound(self):
        for name, argtypes, restype in _lib.FUNCTIONS:
            f = getattr(_lib.C, name)
            self.assertEqual(list(f.argtypes), list(argtypes), name)
        names = [n for n, _, _ in _lib.FUNCTIONS]
        self.assertEqual(len(names), len(set(names)), "duplicate entries in the table")

    def test_unknown_function_is_an_attribute_error(self):
        with self.assertRaises(AttributeError):
            _lib.C.mnas_no_such_function

    def test_missing_symbol_names_itself(self):
        fake = _LibraryWithout(_lib._state["cdll"], "mnas_mlp_forward")
        with self.assertRaises(mnas.LibraryVersionError) as cm:
            _lib._bind(fake, "/some/libmnas.so.0")
        self.assertIn("mnas_mlp_forward", str(cm.exception))
        self.assertIsInstance(cm.exception, ImportError)

    def test_major_version_mismatch(self):
        class Fake:
            mnas_version_number = _FakeFunction(10203)  # 1.2.3
        with self.assertRaises(mnas.LibraryVersionError) as cm:
            _lib._check_version(Fake(), "/x/libmnas.so.1")
        msg = str(cm.exception)
        self.assertIn("1.2.3", msg)
        self.assertIn("major version %d" % mnas.EXPECTED_MAJOR, msg)

        class Same:
            mnas_version_number = _FakeFunction(mnas.EXPECTED_MAJOR * 10000 + 99)
        self.assertEqual(_lib._check_version(Same(), "x"), mnas.EXPECTED_MAJOR * 10000 + 99)

    def test_not_libmnas(self):
        libc = ctypes.CDLL(None)
        with self.assertRaises(mnas.LibraryVersionError):
            _lib._check_version(libc, "libc")

    def test_status_from_message(self):
        self.assertEqual(_lib.status_of_message("shape mismatch: mnas_add: ..."), -2)
        self.assertEqual(_lib.status_of_message("stale tensor (its tape was reset or freed): x"), -4)
        self.assertEqual(_lib.status_of_message("something else"), -10)

    def test_switching_library_in_use_refused(self):
        mnas.Context().close()  # the library is in use from now on
        with self.assertRaises(mnas.LibraryError):
            mnas.load("/nonexistent/libmnas.so.0")
        # the same file again is fine
        self.assertEqual(mnas.load(mnas.loaded_path()), mnas.loaded_path())


class TestLoadingInChild(unittest.TestCase):
    """Import-time behaviour, in fresh interpreters."""

    def test_env_var_wins(self):
        path = mnas.loaded_path()
        r = _run("import mnas; print(mnas.loaded_path())", MNAS_LIBRARY=path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), path)

    def test_bad_env_var_fails_import_clearly(self):
        r = _run("import mnas", MNAS_LIBRARY="/nonexistent/libmnas.so.0")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("LibraryNotFoundError", r.stderr)
        self.assertIn("MNAS_LIBRARY", r.stderr)

    def test_explicit_path_after_import(self):
        path = mnas.loaded_path()
        code = ("import mnas, sys\n"
                "try:\n"
                "    mnas.load('/nonexistent/libmnas.so.0')\n"
                "except mnas.LibraryNotFoundError as e:\n"
                "    print('not found ok')\n"
                "print(mnas.load(sys.argv[1]))\n"
                "ctx = mnas.Context(); print(mnas.version())\n")
        r = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                           env=subprocess_env(MNAS_LIBRARY=None), timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.split()
        self.assertEqual(lines[:3], ["not", "found", "ok"])
        self.assertEqual(os.path.realpath(lines[3]), os.path.realpath(path))

    @unittest.skipUnless(os.path.isdir(os.path.join(REPO, "build")), "no build tree")
    def test_build_tree_search(self):
        r = _run("import mnas; print(mnas.loaded_path())", MNAS_LIBRARY=None)
        if r.returncode != 0:
            self.assertIn("LibraryError", r.stderr)  # e.g. only stale builds around
            return
        if r.stdout.strip() == "None":
            self.skipTest("no loadable library in the build tree")
        self.assertTrue(r.stdout.strip().startswith(os.path.join(REPO, "build")), r.stdout)


if __name__ == "__main__":
    unittest.main()
