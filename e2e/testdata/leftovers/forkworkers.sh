#!/bin/sh
# A replica that forks its workers: fakemodel serves $PORT, three more
# idle; all stay in the shell's process group.
"$FAKEMODEL" &
for i in 1 2 3; do sleep 600 & done
wait
