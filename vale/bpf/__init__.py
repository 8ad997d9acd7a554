"""The kernel fast path's BPF side: fastpath.bpf.c, compiled at build time into
fastpath.bpf.o (setup.py), and fastpath.h, the maps' layouts it shares with the loader,
vale._bpf."""

from pathlib import Path

OBJECT = Path(__file__).with_name("fastpath.bpf.o")
SOURCE = Path(__file__).with_name("fastpath.bpf.c")
