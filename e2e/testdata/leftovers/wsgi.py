# A WSGI app for gunicorn -w 4: the forked workers are what must not
# outlive a killed mattingctl.
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]
