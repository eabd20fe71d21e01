#!/usr/bin/env bash
# Runs validate_test.py with Debian's python3 (python3-kubernetes, python3-yaml).
exec /usr/bin/python3 "$(dirname "$0")/validate_test.py"
