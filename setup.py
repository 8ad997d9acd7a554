"""Builds the compiled modules: vale._fastpath (the data plane), vale._app (a memif
client's data path, for programs) and vale._bpf (the kernel fast path's loader, linked
with libbpf), and the fast path's BPF object,
vale/bpf/fastpath.bpf.o, compiled by clang (-target bpf) at build time: nothing is
compiled on the host that runs vale.

VALE_DEBUG=1 builds with bounds checks, line tracing and an annotated HTML
listing (vale/_fastpath.html) so the inner loops can be checked for Python calls.
VALE_BPF=0 builds without the fast path (no clang or libbpf needed): no vale._bpf, no
object, and the switch forwards everything through its packet sockets.
"""
import os
import shutil
import subprocess
import sysconfig

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("VALE_DEBUG", "") not in ("", "0")
BPF = os.environ.get("VALE_BPF", "1") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": DEBUG,
    "embedsignature": True,
}
macros = []
if DEBUG:
    directives.update(linetrace=True, profile=True)
    macros.append(("CYTHON_TRACE_NOGIL", "1"))

# The C benchmark in bench/ is built with the same flags, so the two compare fairly.
# Cython's own loops compare its int and unsigned temporaries: not ours to mend, not shown.
# `cdef inline` helpers of the per-frame path (admit, the learning lookup) are bigger than
# gcc's -O2 limit for inline functions, and out of line they cost a call per frame.
COMPILE_ARGS = (["-O2", "-g0"] if not DEBUG else ["-O0", "-g"]) + [
    "-Wno-sign-compare", "--param=max-inline-insns-single=200"]

extensions = [Extension(
    "vale._fastpath",
    ["vale/_fastpath.pyx"],
    define_macros=macros,
    extra_compile_args=COMPILE_ARGS,
), Extension(
    # the memif client's data path, for programs (vale.app): no switch in it
    "vale._app",
    ["vale/_app.pyx"],
    define_macros=macros,
    extra_compile_args=COMPILE_ARGS,
)]
if BPF:
    # libbpf from Debian's libbpf-dev, linked dynamically (libbpf1 at run time).
    extensions.append(Extension(
        "vale._bpf",
        ["vale/_bpf.pyx"],
        include_dirs=["vale"],
        libraries=["bpf"],
        define_macros=macros,
        extra_compile_args=COMPILE_ARGS,
    ))

BPF_SOURCE = "vale/bpf/fastpath.bpf.c"
BPF_HEADERS = ["vale/bpf/fastpath.h"]
BPF_OBJECT = "vale/bpf/fastpath.bpf.o"


class BuildExt(build_ext):
    """build_ext, and first the BPF object: clang -O2 -g -target bpf against the kernel's
    UAPI headers and libbpf's bpf_helpers.h (no vmlinux.h, no BCC). -g gives the BTF that
    libbpf needs for the maps' definitions."""

    def run(self) -> None:
        if BPF:
            self.build_bpf()
        super().run()

    def build_bpf(self) -> None:
        target = BPF_OBJECT if self.inplace else os.path.join(self.build_lib, BPF_OBJECT)
        sources = [BPF_SOURCE, *BPF_HEADERS]
        if not self.force and os.path.exists(target) and all(
                os.path.getmtime(s) <= os.path.getmtime(target) for s in sources):
            return
        clang = os.environ.get("CLANG", "clang")
        if shutil.which(clang) is None:
            raise SystemExit(
                f"error: {clang} not found: the kernel fast path ({BPF_SOURCE}) is compiled "
                "at build time. Install Debian's clang, llvm and libbpf-dev (`make setup` "
                "does, as root), or build without the fast path: VALE_BPF=0")
        if not os.path.exists("/usr/include/bpf/bpf_helpers.h"):
            raise SystemExit("error: <bpf/bpf_helpers.h> not found: install Debian's "
                             "libbpf-dev, or build without the fast path: VALE_BPF=0")
        # -target bpf does not look in the multiarch directory, where asm/ lives.
        multiarch = sysconfig.get_config_var("MULTIARCH") or ""
        includes = [f"-I/usr/include/{multiarch}"] if multiarch else []
        os.makedirs(os.path.dirname(target), exist_ok=True)
        cmd = [clang, "-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-mcpu=v3",
               *includes, "-c", BPF_SOURCE, "-o", target]
        self.announce(" ".join(cmd), level=2)
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"error: compiling {BPF_SOURCE} failed:\n{result.stderr}")


setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=DEBUG,
    ),
    cmdclass={"build_ext": BuildExt},
)
