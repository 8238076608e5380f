//go:build unix

package supervisor

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

func TestAccessLogOptions(t *testing.T) {
	for _, tt := range []struct {
		name, log, format string
		wantLog, wantErr  string
	}{
		{"off by default", "", "", "", ""},
		{"off", "off", "json", "", ""},
		{"stdout", "-", "", "-", ""},
		{"a relative path becomes absolute", "access.log", "combined", "/abs", ""},
		{"unknown format", "-", "xml", "", `--access-log-format "xml" is not combined or json`},
		{"unknown format with the log off", "", "JSON", "", `--access-log-format "JSON" is not combined or json`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := upDefaults(1)
			o.AccessLog, o.AccessLogFormat = tt.log, tt.format
			got, err := o.resolve()
			switch {
			case tt.wantErr != "":
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if tt.format == "" && got.AccessLogFormat != "combined" {
				t.Errorf("format %q, want combined", got.AccessLogFormat)
			}
			if tt.wantLog == "/abs" {
				if !filepath.IsAbs(got.AccessLog) || filepath.Base(got.AccessLog) != tt.log {
					t.Errorf("path %q, want an absolute path to %s", got.AccessLog, tt.log)
				}
			} else if got.AccessLog != tt.wantLog {
				t.Errorf("AccessLog %q, want %q", got.AccessLog, tt.wantLog)
			}
		})
	}
}

// TestRunAccessLogUnwritable: a file that cannot be opened stops Run
// before anything starts, with an error naming the flag and the file.
func TestRunAccessLogUnwritable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no-such-dir", "access.log")
	var opts Options
	s := newTestSupervisor(t, func(o *Options) {
		o.Host, o.Admin, o.AccessLog = "127.0.0.1", "none", path
		opts = *o
	}, "serve")
	err := s.Run(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "--access-log: ") || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Run: %v; want one line naming --access-log and %s", err, path)
	}
	if len(s.snapshot()) != 0 {
		t.Error("replicas were started")
	}
	if _, err := control.Connect(opts.StateDir, opts.Name); err == nil {
		t.Error("the control socket outlived a failed start")
	}
}

// TestRunAccessLog: requests through the proxy are logged to the file,
// which SIGHUP's handler reopens, and the log is written out at stop.
func TestRunAccessLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	var opts Options
	s := newTestSupervisor(t, func(o *Options) {
		o.Host, o.Admin, o.Name, o.Health = "127.0.0.1", "none", "alog", "/health"
		o.AccessLog, o.AccessLogFormat = path, "json"
		opts = *o
	}, "serve")
	ran := make(chan error, 1)
	go func() { ran <- s.Run(context.Background()) }()
	testutil.WaitFor(t, 20*time.Second, "the instance to be ready", func() bool {
		c, err := control.Connect(opts.StateDir, opts.Name)
		if err != nil {
			return false
		}
		st, err := c.Status(context.Background())
		return err == nil && st.Ready() == 1
	})
	get := func(path string) {
		t.Helper()
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(opts.Port) + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	get("/health?before")
	testutil.WaitFor(t, 5*time.Second, "the first line in the file", func() bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), `"path":"/health?before"`)
	})
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	s.reopenAccessLog()
	get("/health?after")
	s.Stop("test")
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{path + ".1": "/health?before", path: "/health?after"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], `"path":"`+want+`"`) {
			t.Errorf("%s: %q, want one line for %s", filepath.Base(file), b, want)
		}
	}
}
