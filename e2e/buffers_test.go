package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/internal/testutil"
	"github.com/mattingctl/mattingctl/supervisor"
)

// TestBodiesSpillToDiskWithinBudgets is the memory attack at a
// small scale: with --max-buffer 4MiB and --max-disk-buffer 6MiB, three
// uploads of 3 MiB cannot all be held in memory, so two go to files in the
// buffer directory; then, with both budgets full, a new request is answered
// 503 with Retry-After before its body is read. Every upload is answered
// 200 once whole, and its file is gone after its request. Every client is
// 127.0.0.1 here, so the client address's share is off.
func TestBodiesSpillToDiskWithinBudgets(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "buffers")
	in := start(t, 1, "--max-buffer", "4MiB", "--max-disk-buffer", "6MiB", "--buffer-dir", dir, "--max-client-buffer", "0", "--", fakemodel)
	in.waitReady(1)
	const size = 3 << 20
	files := func() int {
		f, _ := filepath.Glob(filepath.Join(dir, balancer.BufferFilePattern))
		return len(f)
	}

	// Each upload sends all but its last byte, and waits.
	var uploads []*rawUpload
	for range 2 {
		uploads = append(uploads, startRawUpload(t, in, size, size-1))
	}
	// Memory holds one at most (3 MiB of the 3.5 MiB that bodies past
	// their first chunk may take); both may spill when they outgrow it at
	// the same moment.
	testutil.WaitFor(t, 15*time.Second, "a 3 MiB body on disk", func() bool { return files() >= 1 })
	uploads = append(uploads, startRawUpload(t, in, size, size-1))
	// Two of the three are on disk: the disk budget is full.
	testutil.WaitFor(t, 15*time.Second, "two of three 3 MiB bodies on disk", func() bool { return files() == 2 })

	// The disk budget is full. Requests that declare 16 KiB and send a
	// byte take what is left of memory, 16 KiB each once their byte has
	// arrived, until one is refused.
	var held []*rawUpload
	refused := false
	for i := 0; i < 100 && !refused; i++ {
		u := startRawUpload(t, in, 16<<10, 1)
		_ = u.conn.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
		resp, err := http.ReadResponse(u.r, nil)
		if err != nil {
			held = append(held, u) // admitted: waiting for its body
			continue
		}
		refused = true
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("a request past both budgets got %s, Retry-After %q; want 503 with Retry-After", resp.Status, resp.Header.Get("Retry-After"))
		}
	}
	if !refused {
		t.Fatalf("%d requests holding 16 KiB each were admitted past --max-buffer and --max-disk-buffer", len(held))
	}
	for _, u := range held {
		u.conn.Close()
	}
	// Their memory is given back when the proxy has seen them close: on
	// a busy machine that can come after the uploads' last bytes, which
	// would find the budgets still full.
	testutil.WaitFor(t, 15*time.Second, "only the uploads' connections open", func() bool {
		return in.status().Conns == int64(len(uploads))
	})

	// The uploads finish and are served whole, from memory and from disk.
	for i, u := range uploads {
		if _, err := u.conn.Write([]byte{'x'}); err != nil {
			t.Fatal(err)
		}
		_ = u.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(u.r, nil)
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		var r reply
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil || r.BodyLen != size {
			t.Errorf("upload %d: %s, %d body bytes reached the replica (%v); want 200 and %d", i, resp.Status, r.BodyLen, err, size)
		}
	}
	testutil.WaitFor(t, 15*time.Second, "no body file left", func() bool { return files() == 0 })
}

// TestLeftoverBodiesRemovedAtStart: bodies a kill -9'd instance left in
// its default buffer directory are removed when the instance of the same
// name starts again.
func TestLeftoverBodiesRemovedAtStart(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	// In the instances' TMPDIR (launch sets it), under the name it takes.
	dir := filepath.Join(testTmp(home), filepath.Base(supervisor.DefaultBufferDir(home, "default")))
	files := func() []string {
		f, _ := filepath.Glob(filepath.Join(dir, balancer.BufferFilePattern))
		return f
	}
	in := startIn(t, home, 1, "--max-buffer", "0", "--", fakemodel)
	in.waitReady(1)
	startRawUpload(t, in, 1<<20, 1000) // stalls; with --max-buffer 0 it is on disk
	testutil.WaitFor(t, 15*time.Second, "the body on disk", func() bool { return len(files()) == 1 })
	_ = in.cmd.Process.Kill()
	in.wait(10 * time.Second)
	if len(files()) != 1 {
		t.Fatalf("after kill -9 the body file is gone already: %v", files())
	}

	again := startIn(t, home, 1, "--", fakemodel)
	again.waitReady(1)
	if f := files(); len(f) != 0 {
		t.Errorf("the killed instance's bodies are still there: %v", f)
	}
	if _, _, code := again.ctl("down"); code != 0 {
		t.Fatal("down failed")
	}
	again.wait(30 * time.Second)
}

// rawUpload is a POST whose body is sent in parts over its own connection.
type rawUpload struct {
	conn net.Conn
	r    *bufio.Reader
}

// startRawUpload declares a body of declared bytes to fakemodel through
// in's proxy and sends the first send of them.
func startRawUpload(t *testing.T, in *instance, declared, send int) *rawUpload {
	t.Helper()
	conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(in.port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	head := fmt.Sprintf("POST /api/matting_base64 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", declared)
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(bytes.Repeat([]byte("x"), send)); err != nil {
		t.Fatal(err)
	}
	return &rawUpload{conn: conn, r: bufio.NewReader(conn)}
}
