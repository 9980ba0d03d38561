"""Builds the dsv4 Python package with libdsv4.so inside it.

`pip install ./python` (from the repository root) runs CMake on the repository (the folder above this one,
or DSV4_SOURCE_DIR), builds only the shared library target, and copies it to dsv4/libdsv4.so in the wheel.
Only setuptools and cmake are needed: on a machine with no package index, use
`pip install --no-build-isolation ./python` so pip uses the setuptools already installed.

Environment:
  DSV4_SOURCE_DIR        the dsv4 source tree (default: the parent of this folder)
  DSV4_CMAKE_ARGS        extra arguments for the CMake configure step (shell-quoted)
  DSV4_PREBUILT_LIBRARY  skip CMake and bundle this already built libdsv4.so instead
  DSV4_BUILD_JOBS        parallel build jobs (default: the CPU count)
"""

import os
import shlex
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = "libdsv4.so"

try:  # setuptools >= 70.1 has its own bdist_wheel; older ones use the wheel package's
    from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel
except ImportError:
    try:
        from wheel.bdist_wheel import bdist_wheel as _bdist_wheel
    except ImportError:
        _bdist_wheel = None


def _source_dir():
    root = os.environ.get("DSV4_SOURCE_DIR") or os.path.dirname(HERE)
    root = os.path.abspath(root)
    for need in ("CMakeLists.txt", os.path.join("include", "dsv4", "dsv4.h")):
        if not os.path.isfile(os.path.join(root, need)):
            raise RuntimeError(f"dsv4: {root} is not the dsv4 source tree (no {need}); set DSV4_SOURCE_DIR "
                               "or DSV4_PREBUILT_LIBRARY")
    return root


def _build_library(build_temp):
    """Configures and builds the dsv4 shared library with CMake; returns the path of the built file."""
    prebuilt = os.environ.get("DSV4_PREBUILT_LIBRARY")
    if prebuilt:
        if not os.path.isfile(prebuilt):
            raise RuntimeError(f"dsv4: DSV4_PREBUILT_LIBRARY={prebuilt} is not a file")
        return prebuilt
    cmake = shutil.which("cmake")
    if not cmake:
        raise RuntimeError("dsv4: building the package needs cmake on PATH (and the CUDA toolkit, libxxhash-dev, "
                           "libcjson-dev); or set DSV4_PREBUILT_LIBRARY to a built libdsv4.so")
    src = _source_dir()
    bdir = os.path.abspath(os.path.join(build_temp, "dsv4-cmake"))
    os.makedirs(bdir, exist_ok=True)
    configure = [cmake, "-S", src, "-B", bdir, "-DCMAKE_BUILD_TYPE=Release", "-DDSV4_BUILD_TESTS=OFF",
                 "-DDSV4_BUILD_TOOLS=OFF"]
    if not os.path.isfile(os.path.join(bdir, "CMakeCache.txt")) and shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    configure += shlex.split(os.environ.get("DSV4_CMAKE_ARGS", ""))
    jobs = os.environ.get("DSV4_BUILD_JOBS") or str(os.cpu_count() or 2)
    subprocess.check_call(configure)
    subprocess.check_call([cmake, "--build", bdir, "--target", "dsv4", "-j", jobs])
    built = os.path.join(bdir, LIB)
    if not os.path.exists(built):
        raise RuntimeError(f"dsv4: the CMake build did not produce {built}")
    return built


class BuildPyWithLibrary(build_py):
    """build_py, then the C library into the package (dsv4/libdsv4.so, the real file, not a symlink)."""

    def run(self):
        super().run()
        build_temp = self.get_finalized_command("build").build_temp
        built = os.path.realpath(_build_library(build_temp))
        if getattr(self, "editable_mode", False):  # pip install -e: next to the sources
            dest_dir = os.path.join(HERE, "dsv4")
        else:
            dest_dir = os.path.join(self.build_lib, "dsv4")
        os.makedirs(dest_dir, exist_ok=True)
        dest = os.path.join(dest_dir, LIB)
        shutil.copyfile(built, dest)
        os.chmod(dest, 0o755)
        self.announce(f"dsv4: bundled {built} as {dest}", level=2)

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, "dsv4", LIB)]


class BinaryDistribution(Distribution):
    """The wheel holds a native library: platform-specific, installed to platlib."""

    def has_ext_modules(self):
        return True


cmdclass = {"build_py": BuildPyWithLibrary}

if _bdist_wheel is not None:
    class BdistWheel(_bdist_wheel):
        """py3-none-<platform>: the library is loaded with ctypes, so any CPython 3 will do."""

        def finalize_options(self):
            super().finalize_options()
            self.root_is_pure = False

        def get_tag(self):
            _, _, plat = super().get_tag()
            return "py3", "none", plat

    cmdclass["bdist_wheel"] = BdistWheel

setup(cmdclass=cmdclass, distclass=BinaryDistribution)
