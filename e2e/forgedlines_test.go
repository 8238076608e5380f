package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestPathCannotForgeLogLines: a %0a in a request's path, which the proxy
// decodes and logs when the replica fails the request, must not start a
// line of its own in mattingctl's log or in the access log.
func TestPathCannotForgeLogLines(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	alog := filepath.Join(dir, "access.log")
	in := start(t, 2, "--access-log", alog, "--", fakemodel)
	in.waitReady(2)
	const forged = "12:00:00 [ERROR] mattingctl: forged"
	path := "/a%0a" + strings.ReplaceAll(forged, " ", "%20") + "%0d%0a%1b[31m?crash=1"
	resp, err := http.Get(in.url(path))
	if err == nil {
		resp.Body.Close()
	}
	testutil.WaitFor(t, 10*time.Second, "the failed request to be logged", func() bool {
		return strings.Contains(in.stderr.String(), "replica did not answer")
	})
	in.ctl("down")
	in.wait(30 * time.Second)
	for name, text := range map[string]string{"mattingctl's log": in.stderr.String(), "the access log": readFile(t, alog)} {
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, "12:00:00") || strings.HasPrefix(line, "  |") || strings.Contains(line, "\r") || strings.Contains(line, "\x1b") {
				t.Errorf("a line of %s was forged or holds a control character: %q", name, line)
			}
		}
		if !strings.Contains(text, "forged") {
			t.Errorf("%s does not show the request at all:\n%s", name, text)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
