#!/usr/bin/env bash
# Bazel's entry point for python_client_test.py: Debian's python3, which has
# python3-grpcio and python3-protobuf (deploy/local/lib.sh installs them).
exec /usr/bin/python3 clients/python/python_client_test.py "$@"
