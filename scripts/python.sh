#!/bin/sh
# Prints the interpreter `make install` builds .venv from (override: make install PYTHON=...).
# The operating system's own Python 3 comes first when it is 3.11 or newer and can make
# virtualenvs: distributions build it with profile-guided optimisation and LTO into a
# statically linked executable, which ran the gateway with up to 18% less CPU per request than
# a plain source build (pyenv's) of the same version, most at low concurrency (README;
# benchmarks/gateway.py --python).
# Otherwise the first python3 on PATH.
for candidate in /usr/bin/python3 python3; do
  if "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' \
      >/dev/null 2>&1; then
    echo "$candidate"
    exit 0
  fi
done
echo python3
