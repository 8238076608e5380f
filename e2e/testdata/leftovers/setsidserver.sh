#!/bin/sh
# A replica whose server daemonises: it runs in a session and process
# group of its own, with its own listening socket on $PORT.
setsid -f "$FAKEMODEL"
exec sleep 600
