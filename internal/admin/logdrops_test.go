package admin

import (
	"strings"
	"testing"
)

// droppingSource is a fakeSource whose output dropped lines.
type droppingSource struct {
	fakeSource
	dropped uint64
}

func (d *droppingSource) LogLinesDropped() uint64 { return d.dropped }

func TestLogLinesDropped(t *testing.T) {
	for _, tt := range []struct {
		name string
		src  StatusSource
		want string
	}{
		{"source without drops", &fakeSource{}, MetricLogLinesDropped + " 0\n"},
		{"source with drops", &droppingSource{dropped: 7421}, MetricLogLinesDropped + " 7421\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(t, NewMetrics(tt.src).Handler(), "/metrics")
			if code != 200 || !strings.Contains(body, tt.want) {
				t.Fatalf("/metrics: %d, lacks %q:\n%s", code, tt.want, body)
			}
		})
	}
}

// accessLoggingSource is a fakeSource whose access log dropped lines.
type accessLoggingSource struct {
	fakeSource
	dropped uint64
}

func (d *accessLoggingSource) AccessLogLinesDropped() uint64 { return d.dropped }

func TestAccessLogLinesDropped(t *testing.T) {
	for _, tt := range []struct {
		name string
		src  StatusSource
		want string
	}{
		{"source without an access log", &fakeSource{}, MetricAccessLogLinesDropped + " 0\n"},
		{"source with drops", &accessLoggingSource{dropped: 93}, MetricAccessLogLinesDropped + " 93\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(t, NewMetrics(tt.src).Handler(), "/metrics")
			if code != 200 || !strings.Contains(body, tt.want) {
				t.Fatalf("/metrics: %d, lacks %q:\n%s", code, tt.want, body)
			}
		})
	}
}
