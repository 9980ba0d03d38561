"""CTest entry of the Python GPU suite (test_gpu*.py): exits 77 (CTest: skipped) when torch, CUDA or a usable
GPU is missing, else runs the suite with unittest and exits 0 only if every test passed."""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))


def main():
    try:
        import test_gpu
    except Exception as e:  # an import failure is a failure, not a skip
        print(f"cannot import test_gpu: {e!r}")
        return 1
    if test_gpu.SKIP:
        print(f"skipped: {test_gpu.SKIP} (python: {sys.executable})")
        return 77
    suite = unittest.defaultTestLoader.discover(HERE, pattern="test_gpu*.py")
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    if not result.wasSuccessful() or result.testsRun == 0:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
