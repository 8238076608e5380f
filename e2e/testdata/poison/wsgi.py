"""A model server whose worker segfaults on one input, as a native
extension with a bug does: run under gunicorn -w 1, whose arbiter lives on
and starts a new worker each time."""

import ctypes
import json
import os
import sys


def app(environ, start_response):
    size = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(size) if size else b""
    if b"POISON" in body:
        print("worker %d crashing on a poison request" % os.getpid(), file=sys.stderr, flush=True)
        ctypes.string_at(0)  # SIGSEGV
    out = json.dumps({"replica": int(os.environ.get("MATTINGCTL_REPLICA", "0")), "pid": os.getpid(), "body_len": len(body)}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]
