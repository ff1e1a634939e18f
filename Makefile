# mip6bench: everything runs as root (network namespaces, nftables).
#   sudo make run    set up, then run the main job: the paper's scenario (mip6bench run)
#   sudo make test   set up, then run the whole test suite
#   make test-container   the suite in the project's image, built and run with podman
# `make setup` installs the Debian packages the testbed calls and a virtual environment
# at .venv with pinned Python dependencies and the project (editable). It is idempotent
# and only does work when something is missing or requirements changed.

SHELL := /bin/bash
VENV := .venv
# The venv is made from Debian's python3 (deps installs it), not whichever python3 is first
# on PATH: a pyenv build (--enable-shared, no PGO or LTO) runs the agents' Python slower.
BASE_PY := /usr/bin/python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REQS := $(VENV)/.requirements
DEB_PACKAGES := mininet iproute2 nftables tcpdump tshark wireshark-common radvd iperf3 \
	hostapd bridge-utils iputils-ping net-tools procps util-linux python3 python3-venv \
	ca-certificates git

.PHONY: setup deps venv-base requirements test test-kernel test-vm test-container unit netns run doctor bench clean distclean

setup: deps venv-base $(STAMP)
	@# Bytecode for agents: they start in their own processes, often many at once.
	@$(PY) -m compileall -q mip6bench agents experiments > /dev/null

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# A .venv made from another interpreter is made again from $(BASE_PY).
venv-base:
	@if [ -f $(VENV)/pyvenv.cfg ] && ! grep -qx "home = $(patsubst %/,%,$(dir $(BASE_PY)))" $(VENV)/pyvenv.cfg; then \
	  echo "making $(VENV) again from $(BASE_PY) (it was made from $$(sed -n 's/^home = //p' $(VENV)/pyvenv.cfg))"; \
	  rm -rf $(VENV); \
	fi

# Two steps, so that an image build (Dockerfile) can cache the pinned dependencies in a
# layer of their own, made from requirements.txt alone, before the sources come in.
$(REQS): requirements.txt
	$(BASE_PY) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(STAMP): $(REQS) setup.py
	$(PY) -m pip install -q --no-deps -e .
	touch $@

requirements: deps venv-base $(REQS)

test: setup
	$(PY) -m pytest

# The suite in the project's image, built from the Dockerfile with podman and run with
# --privileged (scripts/test-container.sh; one line and exit 0 where podman cannot run).
test-container:
	scripts/test-container.sh

# The kernel backends (ip6tnl, seg6, netem; user-space ones for comparison) under
# Debian's generic 6.1 kernel in a throw-away VM; skips with one line where it cannot run.
test-kernel: setup
	scripts/test-kernel.sh

# A QEMU VM with Debian's 6.1 kernel as a real second server for cluster mode, and the
# tests against it (tests/vm); skips with one line where it cannot run. ~3-5 min.
test-vm: setup
	scripts/test-vm.sh

unit: setup
	$(PY) -m pytest -m "not netns"

netns: setup
	$(PY) -m pytest -m netns

run: setup
	$(VENV)/bin/mip6bench run

doctor: setup
	$(VENV)/bin/mip6bench doctor

bench: setup
	$(PY) bench/foundation_bench.py --linkemu
	$(PY) bench/mipv6_bench.py
	$(PY) bench/pana_bench.py
	$(PY) bench/pana_latency_bench.py
	$(PY) bench/natfw_bench.py
	$(PY) bench/nf_load_bench.py
	$(PY) bench/ha_load_bench.py
	$(PY) bench/home_firewall_bench.py
	$(PY) bench/fuzz_bench.py
	$(PY) bench/agent_budget_bench.py
	$(PY) bench/sa_push_bench.py

clean:
	-$(VENV)/bin/mip6bench clean

distclean: clean
	rm -rf $(VENV) build *.egg-info
