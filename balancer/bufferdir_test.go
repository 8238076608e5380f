package balancer

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestBufferDirRemade: a buffer directory removed under the running proxy
// (a tmp cleaner) is made again, mode 0700, at the next body that spills,
// which is served; when it cannot be, the body gets 503 with Retry-After
// and no path, counted, and the log says why.
func TestBufferDirRemade(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bodies")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var log testutil.SyncBuffer
	be := newTestBackend(t, 1, echo)
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) {
		o.MaxBuffer, o.BufferDir = 0, dir // every body spills
		o.Logger = hclog.New(&hclog.LoggerOptions{Output: &log, Level: hclog.Warn})
	}), be.Backend)

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if code, body := post(t, srv.Client(), srv.URL, "spilled"); code != http.StatusOK {
		t.Fatalf("after the directory was removed: %d %s, want 200", code, body)
	}
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("the directory made again: %v, %v", fi, err)
	}
	if !strings.Contains(log.String(), "made it again") {
		t.Errorf("log:\n%s\nwant a warning that the directory was made again", log.String())
	}

	// Now a file stands where the directory was: it cannot be made again.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Post(srv.URL, "text/plain", strings.NewReader("spilled"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || strings.Contains(string(body), dir) {
		t.Errorf("%d %q, Retry-After %q; want 503 with Retry-After and no path", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if st := bal.Stats(); st.Rejected != 1 {
		t.Errorf("Rejected = %d, want 1", st.Rejected)
	}
	if !strings.Contains(log.String(), "cannot buffer a request body on disk") {
		t.Errorf("log:\n%s\nwant the disk error", log.String())
	}
	if n := bal.outcomes.rejected[reasonBufferDir].Load(); n != 1 {
		t.Errorf("counted %d under --buffer-dir in the summary, want 1", n)
	}
}
