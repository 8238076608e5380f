"""A Flask app as a new user writes it: it serves /health, and listens on
$PORT, or, given a port as its argument, on that port whatever $PORT says
(Flask's app.run() with a fixed port, as most tutorials show)."""

import os
import sys

from flask import Flask

app = Flask(__name__)


@app.get("/health")
def health():
    return "ok"


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ["PORT"])
    app.run(host="127.0.0.1", port=port)
