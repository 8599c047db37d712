"""The ~10-line toy-regression example of bindings/python/README.md (the
same one as docs/python.md) runs, with a tiny budget, and its numbers are
sane."""

import contextlib
import io
import math
import os
import re
import unittest

from mnas_test_util import BINDINGS, REPO

MARKER = "<!-- toy-regression example"


def example_code(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start = text.index(MARKER)
    m = re.compile(r"```python\n(.*?)```", re.S).search(text, start)
    return m.group(1)


class TestExample(unittest.TestCase):
    def test_docs_show_the_same_example(self):
        readme = example_code(os.path.join(BINDINGS, "README.md"))
        docs = example_code(os.path.join(REPO, "docs", "python.md"))
        self.assertEqual(readme, docs)
        self.assertLessEqual(len([l for l in readme.splitlines() if l.strip()]), 12)

    def test_readme_example_runs_with_a_tiny_budget(self):
        code = example_code(os.path.join(BINDINGS, "README.md"))
        small = code
        for big, tiny in (("learner.train(2000", "learner.train(3"),
                          ("n_per_family=1000", "n_per_family=5")):
            self.assertIn(big, small, "the README example changed; update this test")
            small = small.replace(big, tiny)
        out = io.StringIO()
        scope = {}
        with contextlib.redirect_stdout(out):
            exec(compile(small, "README example", "exec"), scope)
        text = out.getvalue()
        self.assertIn("iteration 3/3", text)
        self.assertIn("MAML (before adapt.)", text)
        result = scope["result"]
        self.assertEqual(len(result.after), 20)
        for name, (mean, ci) in result.stats().items():
            self.assertTrue(math.isfinite(mean) and mean > 0, (name, mean))
            self.assertTrue(math.isfinite(ci) and ci >= 0, (name, ci))
        predictions = [float(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", text.splitlines()[-1])]
        self.assertEqual(len(predictions), 3)
        self.assertTrue(all(math.isfinite(v) for v in predictions))
        self.assertTrue(scope["ctx"].closed)


if __name__ == "__main__":
    unittest.main()
