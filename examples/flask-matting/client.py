"""Threaded load-test client of the original nginx setup, fixed to run:
time.perf_counter() instead of the removed time.clock(), paths and counts
from the command line, and a final summary. One thread per request, as the
original did.

    python3 client.py --images ../sample/sample.jpg -n 450 --out /tmp/out
"""

import argparse
import base64
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

try:
    import cv2
except ImportError:
    # A python3 that is not Debian's (pyenv, a virtualenv) does not see what
    # apt installed; Debian's packages are built for the same CPython, so
    # look there before giving up.
    sys.path.append("/usr/lib/python3/dist-packages")
    import cv2
import numpy as np

IMAGE_EXTS = (".png", ".jpg", ".jpeg")


def post(url, path, bg, out_dir, index, timeout):
    """Send one image; return None on success or an error message."""
    try:
        with open(path, "rb") as f:
            img_base64 = base64.b64encode(f.read())
        request_data = json.dumps({"image": img_base64.decode("utf-8"), "bg": json.dumps(bg)}).encode()
        req = urllib.request.Request(url, data=request_data, headers={"Content-Type": "application/json;charset=utf8"})
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                body = r.read()
        except urllib.error.HTTPError as e:
            return f"status {e.code}: {e.read()[:200].decode(errors='replace')}"
        print(f"time:{time.perf_counter() - start:.2f}s")

        result = base64.b64decode(json.loads(body)["result"])
        img = cv2.imdecode(np.frombuffer(result, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            return "result is not a decodable image"
        if out_dir:
            name = os.path.splitext(os.path.basename(path))[0]
            cv2.imwrite(os.path.join(out_dir, f"{index + 1:04d}_{name}.png"), img)
        return None
    except Exception as e:  # report every failure in the summary, as the original printed it
        return f"{type(e).__name__}: {e}"


def list_images(path):
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTS))
        return [os.path.join(path, n) for n in names]
    return [path]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:9110/api/matting_base64")
    p.add_argument("--images", default=os.path.join(here, "..", "sample", "sample.jpg"),
                   help="image file, or a directory of .png/.jpg files sent in turn")
    p.add_argument("-n", "--count", type=int, default=450, help="requests, one thread each")
    p.add_argument("--bg", default="[33, 150, 242]", help="background colour as a JSON array")
    p.add_argument("--out", help="directory to write result PNGs to")
    p.add_argument("--timeout", type=float, default=600, help="seconds per request")
    args = p.parse_args()

    images = list_images(args.images)
    if not images:
        sys.exit(f"client.py: no .png or .jpg images in {args.images}")
    bg = json.loads(args.bg)
    if args.out:
        os.makedirs(args.out, exist_ok=True)

    errors = [None] * args.count

    def task(i):
        errors[i] = post(args.url, images[i % len(images)], bg, args.out, i, args.timeout)

    print("test started")
    start = time.perf_counter()
    threads = [threading.Thread(target=task, args=(i,)) for i in range(args.count)]
    for t in threads:
        t.start()
    started = time.perf_counter() - start
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start

    failed = [e for e in errors if e is not None]
    print(f"requests={args.count} ok={args.count - len(failed)} failed={len(failed)} "
          f"elapsed={elapsed:.2f}s start_per_thread={started / args.count * 1000:.2f}ms")
    for e in sorted(set(failed))[:5]:
        print(f"error: {failed.count(e)}x {e}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
