"""Builds the one compiled module, vale._fastpath.

VALE_DEBUG=1 builds with bounds checks, line tracing and an annotated HTML
listing (vale/_fastpath.html) so the inner loops can be checked for Python calls.
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("VALE_DEBUG", "") not in ("", "0")

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

extension = Extension(
    "vale._fastpath",
    ["vale/_fastpath.pyx"],
    define_macros=macros,
    extra_compile_args=COMPILE_ARGS,
)

setup(
    ext_modules=cythonize(
        [extension],
        compiler_directives=directives,
        annotate=DEBUG,
    ),
)
