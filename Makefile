# Two entry points for a fresh machine (see README): `make quickstart` and `make test`.
PYTHON ?= python3
PIP = $(PYTHON) -m pip
LUT = profiles/local-onnxruntime-224.json

.PHONY: setup setup-test quickstart test lint bench

# torch is pinned and installed first: the CPU build of 2.13.0; any other torch pulls GBs of CUDA packages.
setup:
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet .

# Debian's real adb client cross-checks the test ADB daemon (tests/android); installed when missing.
setup-test:
	command -v adb >/dev/null || { apt-get update -qq && apt-get install -y -qq adb; }
	# The SSH board tests (tests/ssh) start Debian's real OpenSSH server on loopback and log in with its client.
	[ -x /usr/sbin/sshd ] && command -v ssh >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq openssh-server openssh-client; }
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[test,farm]'
	# pymobiledevice3 (iOS automation tests) is installed on its own: resolved together with litert-torch, pip
	# backtracks endlessly over typing-extensions pins; installed afterwards it only prints a warning.
	$(PIP) install --quiet 'pymobiledevice3>=11,<12'
	# geffnet (gen-efficientnet-pytorch: the public model zoo of the zoo tests and benchmark) declares torchvision,
	# which would replace the pinned torch and does not load with it; geffnet never imports it: --no-deps.
	$(PIP) install --quiet --no-deps 'geffnet==1.0.2'
	$(PYTHON) -c "import pymobiledevice3, litert_torch, onnxruntime, ai_edge_litert, ray, geffnet"
	# The second board Python of the SSH tests: a venv with only numpy and tflite-runtime 2.14.
	$(PYTHON) tests/backends/ssh/board_venv.py
	# The Python 3.10 promise is checked on a real 3.10 where the machine has one (pyenv); the core needs PyYAML.
	for py in $$HOME/.pyenv/versions/3.10*/bin/python3.10; do \
		[ ! -x "$$py" ] || "$$py" -m pip install --quiet 'pyyaml>=6,<7'; done

# `$(PYTHON) -m latency_lut` is the `fbnet-lut` command, found even where the scripts folder is not on PATH.
quickstart: setup
	$(PYTHON) -m latency_lut build --device local
	$(PYTHON) -m latency_lut predict --lut $(LUT) -a fbnet_a -a fbnet_b -a fbnet_c --summary

test: setup-test
	$(PYTHON) -m ruff check latency_lut tests benchmarks examples
	$(PYTHON) -m pytest -q

bench:
	$(PYTHON) benchmarks/build_speed.py
