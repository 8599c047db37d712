"""Type hints of the public Python API: every public function and method of
the mnas package (module-level names without a leading underscore, the
public methods, properties and operators of public classes, inherited ones
included) annotates each parameter and its return; options are named
(no **kwargs except on the constructors that only refuse direct use)."""

import importlib
import inspect
import pkgutil
import unittest

from mnas_test_util import mnas

# Constructors that exist only to refuse direct construction with a
# TypeError pointing at the factory functions; they take anything.
_REFUSING_INIT = {"Tensor.__init__", "ImageDataset.__init__"}


def _modules():
    mods = [mnas]
    for info in pkgutil.iter_modules(mnas.__path__):
        mods.append(importlib.import_module("mnas." + info.name))
    return mods


def _in_package(obj):
    return (getattr(obj, "__module__", None) or "").split(".")[0] == "mnas"


def _functions_of_class(cls):
    """(qualified name, function) of every public callable a class offers
    from package code, inherited ones included."""
    seen = set()
    for klass in cls.__mro__:
        if not _in_package(klass):
            continue
        for name, raw in vars(klass).items():
            if name in seen:
                continue
            dunder = name.startswith("__") and name.endswith("__")
            if name.startswith("_") and not dunder:
                continue
            seen.add(name)
            what = "%s.%s" % (cls.__name__, name)
            if isinstance(raw, property):
                for part, f in (("getter", raw.fget), ("setter", raw.fset)):
                    if f is not None:
                        yield "%s (%s)" % (what, part), f, True
                continue
            if isinstance(raw, (classmethod, staticmethod)):
                yield what, raw.__func__, isinstance(raw, classmethod)
                continue
            if inspect.isfunction(raw) and _in_package(raw):
                yield what, inspect.unwrap(raw), True


def _public(name, obj):
    """Exported by the package, or defined under a public name in a public
    module (mnas._structs, mnas._lib etc. are internal unless exported)."""
    if name in mnas.__all__ and getattr(mnas, name, None) is obj:
        return True
    mod = getattr(obj, "__module__", "") or ""
    return (not name.startswith("_") and mod.split(".")[0] == "mnas"
            and not mod.rpartition(".")[2].startswith("_"))


def public_callables():
    """(name, function, bound) over the package; bound: the first
    parameter is self/cls and needs no annotation."""
    seen = set()
    for mod in _modules():
        for name, obj in vars(mod).items():
            if not _public(name, obj) or id(obj) in seen:
                continue
            seen.add(id(obj))
            if inspect.isclass(obj):
                yield from _functions_of_class(obj)
            elif inspect.isfunction(obj):
                yield "%s.%s" % (obj.__module__, name), inspect.unwrap(obj), False


class TestAnnotations(unittest.TestCase):
    def test_walk_finds_the_api(self):
        names = {n for n, _, _ in public_callables()}
        # the walk must reach functions, methods, properties, classmethods
        # and inherited methods, or the check below proves nothing
        for want in ("mnas.tensors.tensor", "Tensor.from_buffer", "Tensor.shape (getter)",
                     "Tensor.requires_grad (setter)", "Tape.grad", "Learner.train", "Params.close",
                     "Tensor.__add__", "Context.__enter__", "mnas.nn.Adam"):
            self.assertIn(want, names)
        self.assertGreater(len(names), 250)

    def test_every_parameter_and_return_annotated(self):
        missing = []
        for name, fn, bound in public_callables():
            sig = inspect.signature(fn)
            params = list(sig.parameters.values())
            if bound and params:
                params = params[1:]
            for p in params:
                if p.annotation is inspect.Parameter.empty:
                    missing.append("%s: parameter %s" % (name, p.name))
            if sig.return_annotation is inspect.Signature.empty:
                missing.append("%s: return" % name)
        self.assertEqual(missing, [], "unannotated:\n  " + "\n  ".join(missing))

    def test_options_are_named(self):
        loose = []
        for name, fn, _ in public_callables():
            for p in inspect.signature(fn).parameters.values():
                if p.kind is inspect.Parameter.VAR_KEYWORD and name not in _REFUSING_INIT:
                    loose.append(name)
        self.assertEqual(loose, [], "public callables taking **kwargs: %s" % loose)
        with self.assertRaises(TypeError):
            mnas.Tensor()
        with self.assertRaises(TypeError):
            mnas.ImageDataset()
        # the optimiser shorthands name their options
        self.assertIn("beta2", inspect.signature(mnas.Adam).parameters)
        self.assertIn("clip_norm", inspect.signature(mnas.SGD).parameters)

    def test_annotations_are_typing_expressions(self):
        # with `from __future__ import annotations` they are strings; each
        # must at least parse as a Python expression
        import ast
        for name, fn, _ in public_callables():
            sig = inspect.signature(fn)
            anns = [p.annotation for p in sig.parameters.values()] + [sig.return_annotation]
            for a in anns:
                if isinstance(a, str):
                    ast.parse(a, mode="eval")


if __name__ == "__main__":
    unittest.main()
