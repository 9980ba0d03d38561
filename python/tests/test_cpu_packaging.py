"""The packaging path (python/setup.py): the library lands inside the package and is found there.

Builds from a copy of python/ in a temporary folder with DSV4_PREBUILT_LIBRARY (the CMake build itself is
what `pip install ./python` runs; here the already built library stands in for it), so nothing is written
into the source tree.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)


def built_library():
    lib = os.environ.get("DSV4_LIBRARY")
    if lib and os.path.isdir(lib):
        lib = os.path.join(lib, "libdsv4.so")
    return os.path.abspath(lib) if lib and os.path.isfile(lib) else None


def copy_project(dest):
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(PKG_ROOT, name), dest)
    shutil.copytree(os.path.join(PKG_ROOT, "dsv4"), os.path.join(dest, "dsv4"),
                    ignore=shutil.ignore_patterns("__pycache__", "libdsv4.so"))


def has_bdist_wheel():
    return (importlib.util.find_spec("wheel") is not None
            or importlib.util.find_spec("setuptools.command.bdist_wheel") is not None)


@unittest.skipUnless(built_library(), "DSV4_LIBRARY does not name a built libdsv4.so")
@unittest.skipUnless(importlib.util.find_spec("setuptools"), "setuptools is not installed")
class PackagingTest(unittest.TestCase):
    def env(self, **extra):
        env = {k: v for k, v in os.environ.items() if k not in ("DSV4_LIBRARY", "PYTHONPATH")}
        env.update(extra)
        return env

    def check_installed(self, site):
        """Imports dsv4 from `site` with DSV4_LIBRARY unset: the bundled library must be the one loaded."""
        code = ("import dsv4, os; print(os.path.realpath(dsv4.library_path())); "
                "print(dsv4.RouterConfig.preset('v4-flash').hidden_size)")
        p = subprocess.run([sys.executable, "-c", code], cwd=site, env=self.env(PYTHONPATH=site),
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        path, hidden = p.stdout.split()
        bundled = os.path.realpath(os.path.join(site, "dsv4", "libdsv4.so"))
        self.assertEqual(path, bundled)
        self.assertEqual(hidden, "4096")

    def test_build_py_bundles_the_library(self):
        with tempfile.TemporaryDirectory() as d:
            src, out = os.path.join(d, "src"), os.path.join(d, "lib")
            os.mkdir(src)
            copy_project(src)
            p = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", out], cwd=src,
                               env=self.env(DSV4_PREBUILT_LIBRARY=built_library()), capture_output=True, text=True,
                               timeout=300)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            lib = os.path.join(out, "dsv4", "libdsv4.so")
            self.assertTrue(os.path.isfile(lib) and not os.path.islink(lib), "the library is not a regular file")
            with open(lib, "rb") as f:
                self.assertEqual(f.read(4), b"\x7fELF")
            self.check_installed(out)

    @unittest.skipUnless(has_bdist_wheel(), "neither setuptools' bdist_wheel nor the wheel package is installed")
    def test_wheel(self):
        with tempfile.TemporaryDirectory() as d:
            src, dist, site = (os.path.join(d, x) for x in ("src", "dist", "site"))
            os.mkdir(src)
            copy_project(src)
            p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", dist,
                                src], env=self.env(DSV4_PREBUILT_LIBRARY=built_library()), capture_output=True,
                               text=True, timeout=600)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            wheels = [f for f in os.listdir(dist) if f.endswith(".whl")]
            self.assertEqual(len(wheels), 1, wheels)
            self.assertRegex(wheels[0], r"^dsv4-0\.1\.0-py3-none-linux_\w+\.whl$")
            with zipfile.ZipFile(os.path.join(dist, wheels[0])) as z:
                names = z.namelist()
                self.assertIn("dsv4/libdsv4.so", names)
                self.assertIn("dsv4/torch_ops.py", names)
                z.extractall(site)
            self.check_installed(site)


if __name__ == "__main__":
    unittest.main()
