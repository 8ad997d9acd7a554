# The commands the README names. Everything lands in .venv; nothing is installed system-wide
# except Debian packages, and only when running as root (as CI does).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the tests, the demo and the benchmarks use (present already: nothing is
# installed). Without root they are not installed, and the tests that need them skip.
# clang, llvm and libbpf-dev (with libelf-dev and zlib1g-dev) build the kernel fast path
# (vale/bpf/, vale/_bpf.pyx); bpftool is for looking at it. dpdk-dev has dpdk-testpmd, the
# real vhost-user front end the tests attach to vale; qemu-system-x86 boots their guests.
# prometheus brings promtool (contrib/'s tests); zsh and groff-base test completion and the
# man pages; dpkg-dev, debhelper and dh-virtualenv build the package (make deb), and
# mmdebstrap makes the fresh Debian make check-systemd installs it in.
DEBS := gcc make iproute2 iputils-ping iperf3 ethtool netsniff-ng openvswitch-switch prometheus \
	tcpdump tshark systemd-container python3-venv python3-dev liburing-dev \
	clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool dpdk-dev qemu-system-x86 \
	zsh groff-base dpkg-dev debhelper dh-virtualenv mmdebstrap

.PHONY: setup debs build test test-debug bench bench-e2e bench-vm bench-app check-systemd run \
	clean man deb

setup: $(STAMP)

# Checked on every run (a dpkg -s each), so that packages added to DEBS reach machines
# whose venv is already made.
debs:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	    if [ -n "$$missing" ]; then \
	        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	            --no-install-recommends $$missing; \
	    fi; \
	fi

$(STAMP): pyproject.toml setup.py | debs
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	# The build requirements go into the venv too, so `make build` can rebuild in place.
	$(PY) -m pip install -qq $$($(PY) -c "import tomllib; \
	    print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires']))")
	$(PY) -m pip install -qq --no-build-isolation -e '.[test]'
	touch $(STAMP)

build: setup
	$(PY) setup.py -q build_ext --inplace

test: build
	$(PY) -m ruff check vale tests bench cli
	$(PY) -m pytest

# Bounds checks, line tracing and an annotated listing (vale/_fastpath.html), then the tests.
test-debug: setup
	VALE_DEBUG=1 $(PY) setup.py -q build_ext --inplace --force
	$(PY) -m pytest -q
	$(PY) setup.py -q build_ext --inplace --force

bench: build
	$(PY) bench/fastpath.py --json

# The run goes into place only when it completed: a failed one leaves the last good run.
bench-vm: build
	$(PY) -c 'import matplotlib' 2>/dev/null || $(PY) -m pip install -qq --no-build-isolation -e '.[bench]'
	$(PY) bench/vm.py --json --plot docs/vm.svg > docs/vm.json

bench-app: build
	$(PY) -c 'import matplotlib' 2>/dev/null || $(PY) -m pip install -qq --no-build-isolation -e '.[bench]'
	$(PY) bench/app.py --json --plot docs/app.svg > docs/app.json

bench-e2e: build
	$(PY) -c 'import matplotlib' 2>/dev/null || $(PY) -m pip install -qq --no-build-isolation -e '.[bench]'
	$(PY) bench/e2e.py --json --plot docs/e2e.new.svg > docs/e2e.new.json
	mv docs/e2e.new.json docs/e2e.json && mv docs/e2e.new.svg docs/e2e.svg

# valed(8) and valectl(8), rewritten from the source of their --help (vale/manpages.py);
# tests/test_manpages.py fails while they differ.
man: setup
	$(PY) -m vale.manpages man

# The Debian package (bookworm; debian/, docs/operations.md), built from this tree's tracked
# files (git ls-files: add new ones first) in a scratch copy under build/deb, with the
# venv's dependencies from PyPI; the .deb lands in DEB_OUT (here by default).
DEB_OUT ?= .
DEB := vale_$(shell dpkg-parsechangelog -S Version 2>/dev/null)_$(shell dpkg --print-architecture).deb
deb: debs
	rm -rf build/deb && mkdir -p build/deb/src
	git ls-files -z | tar --null -T - --ignore-failed-read -cf - | tar -xf - -C build/deb/src
	cd build/deb/src && dpkg-buildpackage -us -uc -b
	mv build/deb/$(DEB) $(DEB_OUT)/
	@echo "$(DEB_OUT)/$(DEB)"

# The package under a real systemd, in a throwaway container (also a test: needs root).
check-systemd: deb
	systemd/check.sh $(DEB)

# The main job: valed with three hosts in network namespaces on vale0, traffic shown
# flowing; Ctrl-C removes everything. Needs root.
run: build
	$(PY) -m vale.demo

clean:
	rm -rf build vale/*.c vale/*.so vale/*.html vale/bpf/*.o bench/fastpath_c
