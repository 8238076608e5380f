//go:build unix

package supervisor

import (
	"os"
	"syscall"
)

// reopenSignals reopen the access log and nothing else, as SIGUSR1 does
// for nginx: logrotate's postrotate can send it without restarting the
// replicas nor reloading the config file, which SIGHUP does.
var reopenSignals = []os.Signal{syscall.SIGUSR1}
