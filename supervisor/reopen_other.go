//go:build !unix

package supervisor

import "os"

// reopenSignals: there is no SIGUSR1 here; the access log is reopened on
// SIGHUP only.
var reopenSignals []os.Signal
