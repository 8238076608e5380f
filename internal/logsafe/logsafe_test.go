package logsafe

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

const forged = "/a\n12:00:00 [ERROR] mattingctl: forged"

func newLog(json bool) (hclog.Logger, *bytes.Buffer) {
	var b bytes.Buffer
	return Wrap(hclog.New(&hclog.LoggerOptions{Name: "mattingctl", Output: &b, JSONFormat: json})), &b
}

func lines(b *bytes.Buffer) []string {
	return strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
}

// A value with a newline stays on its line, escaped, whatever its type;
// so does a message.
func TestTextStaysOneLinePerCall(t *testing.T) {
	l, b := newLog(false)
	l.Warn("replica did not answer", "path", forged)
	l.Error("cannot open", "error", errors.New("open "+forged+": no such file"))
	l.With("path", forged).Info("with")
	l.Named("proxy").Info("message\n12:00:00 [ERROR] forged too", "n", 1)
	l.Log(hclog.Warn, "format", "path", hclog.Fmt("%s", forged))
	l.StandardLogger(nil).Print("http: error for " + forged)
	got := lines(b)
	if len(got) != 6 {
		t.Fatalf("6 calls wrote %d lines:\n%s", len(got), b.String())
	}
	for _, line := range got {
		if strings.HasPrefix(line, "12:00:00") || strings.HasPrefix(line, "  |") {
			t.Errorf("a forged line: %q", line)
		}
	}
	if !strings.Contains(got[0], `path="/a\n12:00:00 [ERROR] mattingctl: forged"`) {
		t.Errorf("the path is not shown escaped: %s", got[0])
	}
}

// The JSON format escapes by itself: the value arrives intact.
func TestJSONKeepsTheValue(t *testing.T) {
	l, b := newLog(true)
	l.Warn("replica did not answer", "path", forged, "n", 3)
	var rec map[string]any
	if err := json.Unmarshal(b.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, b.String())
	}
	if rec["path"] != forged || rec["n"] != float64(3) {
		t.Fatalf("record = %v", rec)
	}
}

// Values without line breaks, and non-string values, are passed as they
// are: the common case costs no copy.
func TestCleanLeavesOrdinaryArgs(t *testing.T) {
	args := []any{"path", "/ok path", "n", 3, "err", errors.New("plain")}
	if got := clean(args); &got[0] != &args[0] {
		t.Error("clean copied args with nothing to change")
	}
	if Line("plain") != "plain" || Line("a\tb\x1b") != `a\tb\x1b` {
		t.Errorf("Line = %q, %q", Line("plain"), Line("a\tb\x1b"))
	}
}
