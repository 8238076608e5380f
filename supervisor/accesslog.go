package supervisor

import (
	"cmp"
	"fmt"
	"path/filepath"

	"github.com/mattingctl/mattingctl/internal/accesslog"
	"github.com/mattingctl/mattingctl/replica"
)

// AccessLogOff is the AccessLog value `up` takes for no access log.
const AccessLogOff = "off"

// resolveAccessLog checks the access log options and returns the format:
// AccessLogOff becomes empty, a path becomes absolute.
func (o *AccessLogOptions) resolveAccessLog() (accesslog.Format, error) {
	name := cmp.Or(o.AccessLogFormat, accesslog.Formats[0])
	format, err := accesslog.ParseFormat(name)
	if err != nil {
		return 0, fmt.Errorf("--access-log-format %q is not combined or json", o.AccessLogFormat)
	}
	o.AccessLogFormat = name
	switch o.AccessLog {
	case "", AccessLogOff:
		o.AccessLog = ""
	case accesslog.Stdout:
	default:
		path, err := filepath.Abs(o.AccessLog)
		if err != nil {
			return 0, fmt.Errorf("--access-log %s: %w", o.AccessLog, err)
		}
		o.AccessLog = path
	}
	return format, nil
}

// newAccessLog returns the access log c asks for, not started; nil when
// it is off.
func newAccessLog(c *config) *accesslog.Log {
	if c.AccessLog == "" {
		return nil
	}
	return accesslog.New(accesslog.Options{
		Path:   c.AccessLog,
		Stdout: c.Stdout,
		Format: c.accessLogFormat,
		Logger: c.Logger.Named("access-log"),
	})
}

// startAccessLog opens the access log's file for append.
func (s *Supervisor) startAccessLog() error {
	if err := s.alog.Start(); err != nil {
		return fmt.Errorf("--access-log: %w", err)
	}
	return nil
}

// closeAccessLog writes out what the access log holds and closes it.
func (s *Supervisor) closeAccessLog() {
	if !s.alog.Close(replica.OutputCloseTimeout) {
		s.log.Warn("access log lines still queued at exit were not written: its file is blocked", "path", s.cfg().AccessLog)
	}
}

// reopenAccessLog opens the access log's path again, as logrotate's
// postrotate asks with SIGHUP or SIGUSR1.
func (s *Supervisor) reopenAccessLog() {
	if s.alog == nil || s.cfg().AccessLog == accesslog.Stdout {
		return
	}
	if err := s.alog.Reopen(); err == nil {
		s.log.Info("access log reopened", "path", s.cfg().AccessLog)
	}
}

// AccessLogLinesDropped is how many access log lines were dropped because
// the log could not keep up, or a write failed. /metrics exports it.
func (s *Supervisor) AccessLogLinesDropped() uint64 { return s.alog.Dropped() }
