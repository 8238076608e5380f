package daemon

// processRunning reports a process as running for as long as it is
// asked: on Windows `logs -f` follows until Ctrl-C.
func processRunning(int) func() bool { return func() bool { return true } }
