package e2e

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// TestBufferDirDeletedWhileRunning: a tmp cleaner removes the instance's
// buffer directory while it runs; the next body that goes to disk makes it
// again and is answered 200. Before, every spilled body got 503 until a
// restart, with the directory's path in the answer.
func TestBufferDirDeletedWhileRunning(t *testing.T) {
	t.Parallel()
	in := start(t, 1, "--max-buffer", "0", "--", fakemodel) // every body goes to disk
	in.waitReady(1)
	dirs, err := filepath.Glob(filepath.Join(testTmp(in.home), "mattingctl-*"))
	if err != nil || len(dirs) != 1 {
		t.Fatalf("the instance's buffer directory: %v, %v", dirs, err)
	}
	if err := os.RemoveAll(dirs[0]); err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("b"), 1<<20)
	for i := range 2 {
		o := post(in.url("/predict"), body)
		if o.err != nil || o.code != http.StatusOK {
			t.Fatalf("spilled body %d after the directory was removed: %d, %v; want 200", i+1, o.code, o.err)
		}
	}
	if fi, err := os.Stat(dirs[0]); err != nil || !fi.IsDir() {
		t.Errorf("the buffer directory was not made again: %v", err)
	}
}
