"""CPU tests of the dsv4 Python package: no GPU, no torch, no pytest (unittest only).

Run from the repository root:
    DSV4_LIBRARY=build/libdsv4.so PYTHONPATH=python python3 -m unittest discover -s python/tests -v
CTest runs them as test_python_cpu. Tests that depend on the process's first library load or driver load
run in a subprocess with their own environment, so they hold whatever this process's environment is.
"""

import ctypes
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)  # python/
if PKG_ROOT not in sys.path:
    sys.path.insert(0, PKG_ROOT)

import dsv4  # noqa: E402
from dsv4 import _library, core  # noqa: E402


def run_python(code, env_update=None, env_remove=()):
    """Runs `code` in a fresh interpreter with python/ on sys.path; returns (rc, stdout, stderr)."""
    env = dict(os.environ)
    for k in env_remove:
        env.pop(k, None)
    env.update(env_update or {})
    env["PYTHONPATH"] = PKG_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                       timeout=300)
    return p.returncode, p.stdout, p.stderr


def library_loads():
    try:
        dsv4.load_library()
        return True
    except dsv4.LibraryNotFoundError:
        return False


class ImportTest(unittest.TestCase):
    def test_import_without_torch(self):
        # torch blocked: `import torch` raises ImportError in the child.
        rc, out, err = run_python("""
            import sys
            sys.modules["torch"] = None
            import dsv4
            assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None], "torch was imported"
            assert dsv4.__version__ == "0.1.0"
            assert issubclass(dsv4.InvalidArgumentError, dsv4.Dsv4Error)
            try:
                import dsv4.torch_ops
            except ImportError as e:
                print("torch_ops:", e)
            else:
                raise SystemExit("dsv4.torch_ops imported without torch")
            """)
        self.assertEqual(rc, 0, err)
        self.assertIn("needs PyTorch", out)

    def test_import_does_not_load_the_library(self):
        # A missing library is only an error when something needs it.
        rc, out, err = run_python("""
            import dsv4
            from dsv4 import _library
            assert _library._lib is None
            print("ok")
            """, env_update={"DSV4_LIBRARY": "/nonexistent/dsv4/libdsv4.so"})
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), "ok")


class DiscoveryTest(unittest.TestCase):
    def test_missing_env_path_lists_every_place(self):
        missing = "/nonexistent/dsv4-test/libdsv4.so"
        rc, out, err = run_python("""
            import dsv4
            try:
                dsv4.version()
            except dsv4.LibraryNotFoundError as e:
                print(e)
                print("PLACES", len(e.places))
            else:
                raise SystemExit("no error")
            """, env_update={"DSV4_LIBRARY": missing})
        self.assertEqual(rc, 0, err)
        self.assertIn(f"DSV4_LIBRARY={missing}", out)
        self.assertIn("no such file", out)
        pkg_place = os.path.join(PKG_ROOT, "dsv4", "libdsv4.so")
        self.assertIn(pkg_place, out)               # beside the package
        self.assertIn("libdsv4.so.0", out)          # the system loader
        self.assertIn("not tried: DSV4_LIBRARY is set", out)
        places = int(out.split("PLACES")[1])
        self.assertGreaterEqual(places, 4)

    def test_candidate_order(self):
        saved = os.environ.get("DSV4_LIBRARY")
        try:
            os.environ["DSV4_LIBRARY"] = "/x/libdsv4.so"
            kinds = [k for k, _ in dsv4.candidate_places()]
        finally:
            if saved is None:
                del os.environ["DSV4_LIBRARY"]
            else:
                os.environ["DSV4_LIBRARY"] = saved
        self.assertEqual(kinds[0], "env")
        self.assertEqual(kinds[1], "package")
        self.assertEqual(kinds[-1], "system loader")

    @unittest.skipUnless(os.environ.get("DSV4_LIBRARY"), "DSV4_LIBRARY is not set")
    def test_env_folder_and_file(self):
        env_lib = os.path.realpath(os.environ["DSV4_LIBRARY"])
        if os.path.isdir(env_lib):
            env_lib = os.path.realpath(os.path.join(env_lib, "libdsv4.so"))
        # This process loaded the file DSV4_LIBRARY names.
        self.assertEqual(os.path.realpath(dsv4.library_path()), env_lib)
        # A folder holding libdsv4.so works too.
        folder = os.path.dirname(os.environ["DSV4_LIBRARY"]) or "."
        rc, out, err = run_python("import dsv4, os; print(os.path.realpath(dsv4.library_path()))",
                                  env_update={"DSV4_LIBRARY": folder})
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), os.path.realpath(os.path.join(folder, "libdsv4.so")))

    def test_not_a_library(self):
        with tempfile.TemporaryDirectory() as d:
            bogus = os.path.join(d, "libdsv4.so")
            with open(bogus, "w") as f:
                f.write("not an ELF file\n")
            rc, out, err = run_python("""
                import dsv4
                try:
                    dsv4.load_library()
                except dsv4.LibraryNotFoundError as e:
                    print(e)
                """, env_update={"DSV4_LIBRARY": bogus})
        self.assertEqual(rc, 0, err)
        self.assertIn(bogus, out)
        self.assertNotIn("no such file", out.split("\n")[1])  # the loader's own reason is shown


@unittest.skipUnless(library_loads(), "libdsv4.so not found (set DSV4_LIBRARY)")
class StatusTest(unittest.TestCase):
    def test_bad_preset_name(self):
        with self.assertRaises(dsv4.InvalidArgumentError) as cm:
            dsv4.RouterConfig.preset("v4-bogus")
        e = cm.exception
        self.assertIsInstance(e, dsv4.Dsv4Error)
        self.assertIsInstance(e, ValueError)
        self.assertEqual(e.status, 1)
        self.assertEqual(e.status_name, "DSV4_ERR_INVALID_ARGUMENT")
        self.assertIn("'name'", str(e))
        self.assertIn("v4-bogus", str(e))
        self.assertEqual(e.function, "dsv4_router_config_preset")
        self.assertEqual(e.detail, dsv4.last_error())  # carried from dsv4_last_error()
        self.assertTrue(e.status_string.startswith("DSV4_ERR_INVALID_ARGUMENT"))

    def test_bad_mode_reaches_c(self):
        lib = dsv4.load_library()
        out = _library.RouterConfigC()
        s = lib.dsv4_router_config_preset(b"v4-pro", 7, ctypes.byref(out))
        with self.assertRaises(dsv4.InvalidArgumentError) as cm:
            _library.check(s, "dsv4_router_config_preset")
        self.assertIn("'mode'", str(cm.exception))
        with self.assertRaises(dsv4.InvalidArgumentError) as cm:
            dsv4.RouterConfig.preset("v4-pro", "sideways")  # refused in Python, before the call
        self.assertIn("'mode'", str(cm.exception))

    def test_config_check_names_the_field(self):
        base = dsv4.RouterConfig.preset("v4-flash")
        base.check()
        cases = [
            (dict(num_experts=2000), dsv4.UnsupportedError, "cfg->num_experts"),
            (dict(top_k=17), dsv4.UnsupportedError, "cfg->top_k"),
            (dict(hidden_size=100), dsv4.UnsupportedError, "cfg->hidden_size"),
            (dict(vocab_size=0), dsv4.UnsupportedError, "cfg->vocab_size"),
            (dict(routed_scaling_factor=-1.0), dsv4.InvalidArgumentError, "cfg->routed_scaling_factor"),
            (dict(routed_scaling_factor=float("nan")), dsv4.InvalidArgumentError, "cfg->routed_scaling_factor"),
        ]
        for change, cls, field in cases:
            with self.subTest(change=change):
                with self.assertRaises(cls) as cm:
                    base.replace(**change).check()
                self.assertIn(f"'{field}'", str(cm.exception))
                self.assertEqual(cm.exception.status, cls.status_value)

    def test_every_status_has_its_class(self):
        seen = set()
        for status, name in dsv4.STATUS_NAMES.items():
            # The Python table agrees with the C library's own names (the enum order of dsv4.h).
            self.assertTrue(dsv4.status_string(status).startswith(name + ":"), (status, dsv4.status_string(status)))
            if status == 0:
                continue
            cls = dsv4.exception_for_status(status)
            self.assertTrue(issubclass(cls, dsv4.Dsv4Error))
            self.assertIsNot(cls, dsv4.Dsv4Error)
            self.assertEqual(cls.status_value, status)
            seen.add(cls)
            e = cls("detail", status=status, function="f")
            self.assertEqual(str(e), f"{name}: f: detail")
        self.assertEqual(len(seen), 10)
        self.assertIs(dsv4.exception_for_status(99), dsv4.Dsv4Error)
        self.assertTrue(dsv4.status_string(99).startswith("DSV4_ERR_?"))

    def test_null_arguments_of_the_ops(self):
        lib = dsv4.load_library()
        # Every op checks its context first; a NULL one is named.
        with self.assertRaises(dsv4.InvalidArgumentError) as cm:
            _library.check(lib.dsv4_hash_router(None, None, None, 1, None, 10, 2, None, None), "dsv4_hash_router")
        self.assertIn("'ctx'", str(cm.exception))
        with self.assertRaises(dsv4.InvalidArgumentError) as cm:
            _library.check(lib.dsv4_topk_select(None, None, None, 1, 10, 10, 2, None, None), "dsv4_topk_select")
        self.assertIn("'ctx'", str(cm.exception))
        with self.assertRaises(dsv4.InvalidArgumentError) as cm:
            _library.check(lib.dsv4_activation_topk(None, None, None, 1, 10, None, 2, 1.0, None, None),
                           "dsv4_activation_topk")
        self.assertIn("'ctx'", str(cm.exception))
        with self.assertRaises(dsv4.InvalidArgumentError) as cm:
            _library.check(lib.dsv4_router_prepare(None, 8), "dsv4_router_prepare")
        self.assertIn("'r'", str(cm.exception))
        self.assertEqual(lib.dsv4_router_take_error_count(None), -1)
        with self.assertRaises(dsv4.InvalidArgumentError) as cm:
            _library.check(lib.dsv4_context_jit_stats(None, None), "dsv4_context_jit_stats")
        self.assertIsNone(lib.dsv4_context_arch(None))
        lib.dsv4_router_destroy(None)   # NULL is a no-op
        lib.dsv4_context_destroy(None)


@unittest.skipUnless(library_loads(), "libdsv4.so not found (set DSV4_LIBRARY)")
class ConfigTest(unittest.TestCase):
    def test_presets(self):
        self.assertEqual(dsv4.PRESETS, ("v4-flash", "v4-pro"))
        want = {"v4-flash": (4096, 256, 6, 1.5, 129280), "v4-pro": (7168, 384, 6, 2.5, 129280)}
        for name, (h, e, k, scale, vocab) in want.items():
            for mode in ("dense", "hash", dsv4.RouterMode.HASH, 0):
                with self.subTest(name=name, mode=mode):
                    c = dsv4.RouterConfig.preset(name, mode)
                    self.assertEqual((c.hidden_size, c.num_experts, c.top_k, c.vocab_size), (h, e, k, vocab))
                    self.assertEqual(c.routed_scaling_factor, scale)
                    expect_mode = dsv4.RouterMode.HASH if mode in ("hash", dsv4.RouterMode.HASH) else dsv4.RouterMode.DENSE
                    self.assertEqual(c.mode, expect_mode)
                    self.assertEqual(c.hash_weights, dsv4.HashWeights.SCORED)
                    c.check()

    def test_struct_layouts(self):
        self.assertEqual(ctypes.sizeof(_library.RouterConfigC), 28)
        self.assertEqual(ctypes.sizeof(_library.JitStatsC), 48)
        c = dsv4.RouterConfig.preset("v4-pro", "hash").replace(hash_weights="uniform", top_k=8)
        back = dsv4.RouterConfig._from_c(c._to_c())
        self.assertEqual(back, c)

    def test_config_by_fields(self):
        c = dsv4.RouterConfig("hash", 64, 10, 3, 100, 1.0, "uniform")
        self.assertEqual(c.mode, dsv4.RouterMode.HASH)
        self.assertEqual(c.hash_weights, dsv4.HashWeights.UNIFORM)
        c.check()
        with self.assertRaises(dsv4.InvalidArgumentError):
            dsv4.RouterConfig("sparse", 64, 10, 3, 100, 1.0)

    def test_version_and_cache(self):
        self.assertEqual(dsv4.version(), "0.1.0")
        cd = dsv4.cache_dir()
        if os.environ.get("DSV4_CACHE") == "0":
            self.assertIsNone(cd)
        elif os.environ.get("DSV4_CACHE_DIR"):
            self.assertEqual(cd, os.environ["DSV4_CACHE_DIR"])

    def test_precompile(self):
        with tempfile.TemporaryDirectory() as d:
            code = """
                import dsv4
                cfg = dsv4.RouterConfig.preset("v4-flash")
                first = dsv4.precompile(cfg, "sm_90a")
                second = dsv4.precompile(cfg, "sm_90a")
                print(first.compiles, first.disk_hits, first.disk_writes, second.compiles, second.disk_hits)
                try:
                    dsv4.precompile(cfg, "sm_1")
                except dsv4.InvalidArgumentError as e:
                    print("ARCH", e)
                try:
                    dsv4.precompile(cfg.replace(num_experts=5000), "sm_90a")
                except dsv4.UnsupportedError as e:
                    print("CFG", e)
                """
            rc, out, err = run_python(code, env_update={"DSV4_CACHE_DIR": d}, env_remove=("DSV4_CACHE",))
            self.assertEqual(rc, 0, err)
            lines = out.splitlines()
            compiles, disk_hits, writes, compiles2, hits2 = (int(x) for x in lines[0].split())
            self.assertGreaterEqual(compiles, 1)
            self.assertEqual(writes, compiles)
            self.assertEqual(compiles2, 0)                  # all from the disk cache now
            self.assertEqual(hits2, compiles + disk_hits)
            arch_dir = os.path.join(d, "sm_90a")
            self.assertEqual(len([f for f in os.listdir(arch_dir) if f.endswith(".cubin")]), compiles + disk_hits)
            self.assertIn("'arch'", lines[1])
            self.assertIn("'cfg->num_experts'", lines[2])
        # The indexer top-k's kernels: every argument checked before anything is compiled.
        rc, out, err = run_python("""
            import dsv4
            for ks, arch in (([0], "sm_90a"), ([], "sm_90a"), ([512, 4097], "sm_90a"), ([512], "sm90a")):
                try:
                    dsv4.precompile_topk(ks, arch)
                except (dsv4.UnsupportedError, dsv4.InvalidArgumentError) as e:
                    print(type(e).__name__, e)
            """, env_update={"DSV4_CACHE": "0"})
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 4, out)
        self.assertTrue(lines[0].startswith("UnsupportedError") and "'ks[0]'" in lines[0], lines[0])
        self.assertTrue(lines[1].startswith("UnsupportedError") and "'count'" in lines[1], lines[1])
        self.assertTrue(lines[2].startswith("UnsupportedError") and "'ks[1]'" in lines[2], lines[2])
        self.assertTrue(lines[3].startswith("InvalidArgumentError") and "'arch'" in lines[3], lines[3])
        # The disk cache off: precompile has nowhere to put its output.
        rc, out, err = run_python("""
            import dsv4
            try:
                dsv4.precompile(dsv4.RouterConfig.preset("v4-flash"), "sm_90a")
            except dsv4.IoError as e:
                print("IO", e.status)
            """, env_update={"DSV4_CACHE": "0"})
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), "IO 9")


@unittest.skipUnless(library_loads(), "libdsv4.so not found (set DSV4_LIBRARY)")
class NoGpuTest(unittest.TestCase):
    def test_context_without_a_driver(self):
        # A driver library that cannot exist: the same outcome as a machine without the NVIDIA driver.
        rc, out, err = run_python("""
            import dsv4
            try:
                dsv4.Context(0)
            except dsv4.NoDriverError as e:
                print(e.status, e)
            """, env_update={"DSV4_TEST_DRIVER_LIB": "libcuda-absent.so.1"})
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.startswith("3 DSV4_ERR_NO_DRIVER"), out)
        self.assertIn("libcuda-absent.so.1", out)

    def test_context_here(self):
        try:
            ctx = dsv4.Context(0)
        except (dsv4.NoDriverError, dsv4.NoDeviceError) as e:
            self.assertIn(e.status, (3, 4))
            self.assertTrue(e.detail)
            return
        ctx.close()
        self.skipTest("this machine has a GPU")

    def test_bad_ordinal(self):
        with self.assertRaises(dsv4.Dsv4Error) as cm:
            dsv4.Context(-1)
        self.assertIsInstance(cm.exception, (dsv4.NoDriverError, dsv4.NoDeviceError))


class PythonSideTest(unittest.TestCase):
    """Conversions done in Python: no library needed."""

    def test_pointers(self):
        class WithDataPtr:
            def data_ptr(self):
                return 4096

        class WithCai:
            __cuda_array_interface__ = {"data": (8192, False), "shape": (1,), "typestr": "<f4", "version": 3}

        self.assertIsNone(core._ptr(None, "x"))
        self.assertIsNone(core._ptr(0, "x"))
        self.assertEqual(core._ptr(1234, "x"), 1234)
        self.assertEqual(core._ptr(ctypes.c_void_p(77), "x"), 77)
        self.assertEqual(core._ptr(WithDataPtr(), "x"), 4096)
        self.assertEqual(core._ptr(WithCai(), "x"), 8192)
        with self.assertRaises(dsv4.InvalidArgumentError) as cm:
            core._ptr("0x10", "lut")
        self.assertIn("'lut'", str(cm.exception))
        with self.assertRaises(dsv4.InvalidArgumentError):
            core._ptr(True, "lut")

    def test_streams(self):
        class TorchLike:
            cuda_stream = 0xABC

        class CupyLike:
            ptr = 0xDEF

        class Proto:
            def __cuda_stream__(self):
                return (0, 0x123)

        self.assertIsNone(core._stream(None))
        self.assertIsNone(core._stream(0))
        self.assertEqual(core._stream(5), 5)
        self.assertEqual(core._stream(TorchLike()), 0xABC)
        self.assertEqual(core._stream(CupyLike()), 0xDEF)
        self.assertEqual(core._stream(Proto()), 0x123)
        with self.assertRaises(dsv4.InvalidArgumentError) as cm:
            core._stream("default")
        self.assertIn("'stream'", str(cm.exception))

    def test_unknown_router_id(self):
        with self.assertRaises(dsv4.InvalidArgumentError) as cm:
            dsv4.router_from_id(10 ** 12)
        self.assertIn("'router'", str(cm.exception))

    def test_context_outlives_its_routers(self):
        """The C context is destroyed only after every router made on it (a router can be unreachable from
        the context, e.g. collected in a cycle, when the context is closed)."""
        calls = []

        class FakeLib:
            def dsv4_context_destroy(self, h):
                calls.append(("context", h))

            def dsv4_router_destroy(self, h):
                calls.append(("router", h))

        import threading
        import weakref
        ctx = object.__new__(dsv4.Context)
        ctx.__dict__.update(_h=0x1000, _closed=False, _nrouters=0, _lock=threading.Lock(), device=0,
                            _routers=weakref.WeakSet(), _lib=FakeLib())

        def router(h):
            r = object.__new__(dsv4.Router)
            r.__dict__.update(_h=h, _lib=FakeLib(), context=ctx, _keep=(), max_tokens=0, id=next(core._NEXT_ID))
            ctx._router_added()
            return r

        seen, hidden = router(0x2000), router(0x3000)
        ctx._routers.add(seen)          # `hidden` plays a router the WeakSet no longer reaches
        ctx.close()
        self.assertEqual(calls, [("router", 0x2000)])
        self.assertEqual(ctx.handle, 0)
        with self.assertRaises(dsv4.InvalidArgumentError):
            ctx.arch
        hidden.close()
        self.assertEqual(calls, [("router", 0x2000), ("router", 0x3000), ("context", 0x1000)])
        hidden.close()
        ctx.close()
        self.assertEqual(len(calls), 3)  # each destroyed once

    def test_host_tensor_is_not_a_device_pointer(self):
        class HostTensor:
            is_cuda = False
            device = "cpu"

            def data_ptr(self):
                return 4096

        with self.assertRaises(dsv4.InvalidArgumentError) as cm:
            core._ptr(HostTensor(), "scores")
        self.assertIn("'scores'", str(cm.exception))

    def test_router_needs_a_context(self):
        with self.assertRaises(dsv4.InvalidArgumentError) as cm:
            dsv4.Router(None, None)
        self.assertIn("'ctx'", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
