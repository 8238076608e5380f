package main

// queueTimeoutFlag is --queue-timeout: a duration, 0 meaning no limit,
// that records whether it was given, on the command line or in a config
// file. Not given, it takes the --upstream-timeout value, whatever that
// is: a request waits for a busy replica as long as it would wait for a
// slow one, as nginx waits up to proxy_read_timeout.
type queueTimeoutFlag struct {
	durationFlag
	set *bool
}

func (f queueTimeoutFlag) Set(s string) error {
	if err := f.durationFlag.Set(s); err != nil {
		return err
	}
	*f.set = true
	return nil
}

// defaultQueueTimeout gives --queue-timeout, when it was not given, the
// --upstream-timeout value.
func (o *upOptions) defaultQueueTimeout() {
	if !o.queueTimeoutSet {
		o.QueueTimeout = o.UpstreamTimeout
	}
}
