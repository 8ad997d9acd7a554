"""A small Linux guest for the tests: Debian's kernel, and an initramfs of our making with
busybox, the virtio-net modules and iperf3, whose init configures eth0 and runs the
commands the kernel command line gives it, then powers off. Booted by QEMU under TCG
(KVM here runs only specially built kernels): slow, but a real virtio-net driver.

Built once into a cache directory from Debian's packages (`apt-get download`, unpacked
with `dpkg -x`, nothing installed), and reused."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

CACHE = Path(os.environ.get("VALE_GUEST_CACHE", "/var/cache/vale-tests/guest"))
VERSION = "1"                   # of what build() makes: a new one is built when it changes
MODULES = ("kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
           "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
           "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
           "kernel/drivers/virtio/virtio_pci.ko", "kernel/net/core/failover.ko",
           "kernel/drivers/net/net_failover.ko", "kernel/drivers/net/virtio_net.ko")
PROGRAMS = ("/usr/bin/iperf3",)

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \\
         failover net_failover virtio_net; do insmod /lib/modules/$m.ko; done
ip link set lo up
ip link set eth0 up
ip addr add $(cat /proc/cmdline | tr ' ' '\\n' | sed -n 's/^vale.ip=//p') dev eth0
echo VALE-GUEST-UP
sh -c "$(cat /proc/cmdline | sed -n 's/.*vale.run=//p' | tr '+' ' ')"
echo VALE-GUEST-DONE $?
poweroff -f
"""


def _run(*cmd: str, cwd: Path | None = None) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=cwd).stdout


def _kernel_package() -> str:
    """The versioned package linux-image-amd64 depends on."""
    for line in _run("apt-cache", "depends", "linux-image-amd64").splitlines():
        name = line.strip().removeprefix("Depends:").strip()
        if name.startswith("linux-image-") and name != "linux-image-amd64":
            return name
    raise RuntimeError("apt knows no linux-image-amd64 dependency")


def _newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio archive in the kernel's newc format: (path, mode, data) each."""
    out = bytearray()

    def pad(n: int) -> None:
        out.extend(b"\0" * (-n % 4))
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], 1):
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        out.extend(header + name.encode() + b"\0")
        pad(len(header) + len(name) + 1)
        out.extend(data)
        pad(len(data))
    return bytes(out)


def _libraries(program: str) -> list[str]:
    paths = []
    for line in _run("ldd", program).splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            paths.append(path)
    return paths


def build(cache: Path = CACHE) -> tuple[Path, Path]:
    """(kernel, initramfs), built into cache unless there already."""
    cache = cache / VERSION
    kernel, initrd = cache / "vmlinuz", cache / "initrd.gz"
    if kernel.exists() and initrd.exists():
        return kernel, initrd
    cache.mkdir(parents=True, exist_ok=True)
    work = cache / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    _run("apt-get", "download", "-q", _kernel_package(), "busybox-static", cwd=work)
    for deb in work.glob("*.deb"):
        _run("dpkg", "-x", str(deb), str(work / "root"))
    root = work / "root"
    (moddir,) = (root / "lib" / "modules").iterdir()
    entries: list[tuple[str, int, bytes]] = [
        (d, 0o40755, b"") for d in ("bin", "lib", "lib/modules", "lib64", "usr", "usr/bin",
                                     "lib/x86_64-linux-gnu", "etc")]
    entries.append(("init", 0o100755, INIT.encode()))
    entries.append(("bin/busybox", 0o100755, (root / "bin" / "busybox").read_bytes()))
    entries.append(("etc/services", 0o100644, b""))
    for module in MODULES:
        entries.append((f"lib/modules/{Path(module).name}", 0o100644,
                        (moddir / module).read_bytes()))
    files = {p for program in PROGRAMS for p in (program, *_libraries(program))}
    for path in sorted(files):
        entries.append((path.lstrip("/"), 0o100755, Path(path).read_bytes()))
    initrd.write_bytes(gzip.compress(_newc(entries), 6))
    shutil.copy(next((root / "boot").glob("vmlinuz-*")), kernel)
    shutil.rmtree(work, ignore_errors=True)
    return kernel, initrd


def qemu_command(kernel: Path, initrd: Path, socket_path: str, mac: str, ip: str,
                 run: str, memory_mib: int = 512) -> list[str]:
    """QEMU under TCG with one virtio-net device on a vhost-user socket (valed's); the
    guest's RAM a shared memfd, as vhost-user needs. `run`: a shell command for init
    (spaces as '+')."""
    return ["qemu-system-x86_64", "-accel", "tcg", "-m", str(memory_mib), "-nographic",
            "-no-reboot", "-smp", "1",
            "-object", f"memory-backend-memfd,id=mem,size={memory_mib}M,share=on",
            "-numa", "node,memdev=mem",
            "-chardev", f"socket,id=c0,path={socket_path},reconnect=1",
            "-netdev", "vhost-user,id=n0,chardev=c0",
            # Debian's QEMU 7.2 under TCG crashes when a vhost-user device starts with
            # MSI-X: legacy interrupts.
            "-device", f"virtio-net-pci,netdev=n0,mac={mac},vectors=0",
            "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", f"console=ttyS0 quiet panic=-1 vale.ip={ip} vale.run={run}"]
