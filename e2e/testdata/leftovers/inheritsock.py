# A replica that binds $PORT, leaves a setsid'd grandchild holding the
# listening socket, and serves on it itself. Once the replica is gone the
# grandchild keeps the port: connections are accepted by the kernel but
# never answered.
import http.server
import os
import socket
import subprocess

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", int(os.environ["PORT"])))
sock.listen(64)
subprocess.Popen(["sleep", "600"], pass_fds=[sock.fileno()], start_new_session=True)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
server.socket = sock
print("serving on", sock.getsockname(), flush=True)
server.serve_forever()
