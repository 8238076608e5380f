"""Flask matting service: the API of the original nginx setup, with OpenCV's
GrabCut standing in for the matting model.

    POST /api/matting_base64  {"image": "<base64 PNG or JPEG>", "bg": "[33, 150, 242]"}
                           -> {"result": "<base64 PNG>"}
    POST /batch            [body, body, ...] -> [answer, answer, ...]
    GET  /health           -> {"status": "ok"}

/batch is the batch endpoint of mattingctl's dynamic batching
(`mattingctl up --batch-path /api/matting_base64 --batch-endpoint /batch`):
a JSON array of /api/matting_base64 bodies, answered with a JSON array of
their answers in the same order, each {"result": ...} or, for that item
alone, {"error": "...", "status": 400}. GrabCut runs one image at a time,
so a batch saves only the requests' overhead here; a GPU model would run
the batch in one forward pass.

Binds 127.0.0.1:$PORT (PORT defaults to 9111), as mattingctl expects.
"""

import base64
import binascii
import json
import os
import sys

# OpenCV reads this once, at import: refuse to decode images with more
# pixels than the largest accepted size, so a small file cannot claim a
# huge canvas.
MAX_SIDE = 4096
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_SIDE * MAX_SIDE))

try:
    import cv2  # noqa: E402
except ImportError:
    # A python3 that is not Debian's (pyenv, a virtualenv) does not see what
    # apt installed; Debian's packages are built for the same CPython, so
    # look there before giving up.
    sys.path.append("/usr/lib/python3/dist-packages")
    import cv2  # noqa: E402
import numpy as np  # noqa: E402
from flask import Flask, jsonify, request  # noqa: E402

MAX_BODY = 50 << 20
GRABCUT_SIDE = 320  # longest side of the image GrabCut runs on
GRABCUT_ITERS = 5
DEFAULT_BG = (255, 255, 255)

app = Flask(__name__)


class BadRequest(Exception):
    """A client error, answered with 400 and its message."""


def parse_bg(value):
    """Return the RGB background from "bg": a JSON array of three integers
    0-255, directly or inside a JSON string as the original client sends it."""
    if value is None:
        return DEFAULT_BG
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(type(v) is int and 0 <= v <= 255 for v in value)
    ):
        raise BadRequest('invalid "bg": want 3 integers 0-255 like [33, 150, 242]')
    return tuple(value)


def decode_image(b64):
    """Decode the base64 of a PNG or JPEG file into a BGR array."""
    if not isinstance(b64, str) or not b64:
        raise BadRequest('missing "image": want the base64 of a PNG or JPEG file')
    if b64.startswith("data:") and ";base64," in b64:
        b64 = b64.split(";base64,", 1)[1]
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadRequest(f'invalid base64 in "image": {e}') from None
    if not (data.startswith(b"\x89PNG\r\n\x1a\n") or data.startswith(b"\xff\xd8")):
        raise BadRequest('"image" is not a PNG or JPEG file')
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        img = None
    if img is None:
        raise BadRequest(f'"image" is not a decodable PNG or JPEG, or is larger than {MAX_SIDE}x{MAX_SIDE}')
    h, w = img.shape[:2]
    if h > MAX_SIDE or w > MAX_SIDE:
        raise BadRequest(f'"image" is {w}x{h}; want 1 to {MAX_SIDE} pixels per side')
    return img


def alpha_matte(img):
    """Return a float alpha in [0, 1] per pixel of img: 1 for foreground.

    GrabCut starts from a rectangle inset from the top, left and right edges
    (outside it is background) and reaching the bottom edge, where a portrait's
    subject is cut off by the frame. It runs on a copy scaled down to
    GRABCUT_SIDE for speed. Background patches enclosed by the subject (lips,
    eyes) are given back to it, the mask is scaled up and blurred for a soft
    edge.
    """
    h, w = img.shape[:2]
    scale = min(1.0, GRABCUT_SIDE / max(h, w))
    small = img
    if scale < 1:
        small = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    inset = max(2, round(0.03 * min(sw, sh)))
    if sw <= 2 * inset + 2 or sh <= inset + 2:
        return np.zeros((h, w), np.float32)  # too small to hold a subject

    mask = np.zeros((sh, sw), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    rect = (inset, inset, sw - 2 * inset, sh - inset)
    cv2.grabCut(small, mask, rect, bgd, fgd, GRABCUT_ITERS, cv2.GC_INIT_WITH_RECT)
    fg = np.where((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)

    # Background components that do not touch the border are holes in the subject.
    _, labels = cv2.connectedComponents((fg == 0).astype(np.uint8), connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    fg[(fg == 0) & ~np.isin(labels, edge)] = 255

    if scale < 1:
        fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR)
    fg = cv2.GaussianBlur(fg, (3, 3), 0)
    return fg.astype(np.float32) / 255.0


def composite(img, alpha, bg_rgb):
    """Blend img over a plain colour: out = alpha*img + (1-alpha)*bg."""
    bg = np.array(bg_rgb[::-1], np.float32)  # OpenCV images are BGR
    a = alpha[:, :, None]
    return np.clip(img.astype(np.float32) * a + bg * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)


def error(code, message):
    return jsonify(error=message), code


def matte(body):
    """Answer one request body, parsed: ({"result": ...}, 200), or
    ({"error": ...}, 4xx or 5xx)."""
    if not isinstance(body, dict):
        return {"error": "invalid JSON body: want an object with \"image\" and \"bg\""}, 400
    try:
        bg = parse_bg(body.get("bg"))
        img = decode_image(body.get("image"))
    except BadRequest as e:
        return {"error": str(e)}, 400
    out = composite(img, alpha_matte(img), bg)
    ok, png = cv2.imencode(".png", out, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        return {"error": "encoding result png failed"}, 500
    return {"result": base64.b64encode(png.tobytes()).decode("ascii")}, 200


def read_json(limit):
    """The request's body parsed as JSON, or None when it is not JSON;
    raises Oversize past limit bytes."""
    if (request.content_length or 0) > limit:
        raise Oversize()
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise Oversize()
    try:
        return json.loads(raw)
    except ValueError:
        return None


class Oversize(Exception):
    """A request body past its limit, answered with 413."""


@app.post("/api/matting_base64")
def matting_base64():
    try:
        body = read_json(MAX_BODY)
    except Oversize:
        return too_large()
    answer, code = matte(body)
    return jsonify(answer), code


MAX_BATCH = 256  # mattingctl's --batch-max bound


@app.post("/batch")
def batch():
    try:
        bodies = read_json(MAX_BODY * MAX_BATCH)
    except Oversize:
        return too_large()
    if not isinstance(bodies, list) or not 1 <= len(bodies) <= MAX_BATCH:
        return error(400, f"invalid batch: want a JSON array of 1 to {MAX_BATCH} request bodies")
    answers = []
    for body in bodies:
        answer, code = matte(body)
        if code != 200:
            answer["status"] = code
        answers.append(answer)
    return jsonify(answers)


@app.get("/health")
def health():
    return jsonify(status="ok")


@app.errorhandler(405)
def method_not_allowed(_):
    return error(405, f"method {request.method} not allowed")


@app.errorhandler(404)
def not_found(_):
    return error(404, f"no such path {request.path}")


@app.errorhandler(413)
def too_large(_=None):
    return error(413, f"request body larger than {MAX_BODY} bytes")


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "9111"))
    app.run(host="127.0.0.1", port=port, threaded=True)
