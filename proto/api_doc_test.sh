#!/usr/bin/env bash
# Fails when docs/api.md is not what proto/api_doc.py writes from the protos.
exec /usr/bin/python3 proto/api_doc.py --check docs/api.md proto/acmevault/v1
