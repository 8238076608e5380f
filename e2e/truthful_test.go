package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestNoAnswerOnAReplicasBehalf is the `printf ... | nc` attack: raw
// requests, each followed by a half-close. A malformed chunked body gets
// 400; a body cut short gets the connection closed with no status line; a
// whole request is the client's to cancel by its FIN (as nginx takes it):
// it gets fakemodel's own answer if it was quick enough, else none. Before,
// all three got an empty 200 that no replica sent.
func TestNoAnswerOnAReplicasBehalf(t *testing.T) {
	t.Parallel()
	in := start(t, 2, "--", fakemodel)
	in.waitReady(2)
	exchange := func(raw string) string {
		t.Helper()
		conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(in.port))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, raw); err != nil {
			t.Fatal(err)
		}
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		got, err := io.ReadAll(conn)
		if err != nil {
			t.Fatalf("reading the answer to %q: %v", raw, err)
		}
		return string(got)
	}
	const path = "POST /api/matting_base64 HTTP/1.1\r\nHost: x\r\n"

	t.Run("malformed chunked body", func(t *testing.T) {
		got := exchange(path + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
		if !strings.HasPrefix(got, "HTTP/1.1 400 ") {
			t.Errorf("answer %q, want 400", got)
		}
	})
	t.Run("body shorter than Content-Length", func(t *testing.T) {
		if got := exchange(path + "Content-Length: 100\r\n\r\nshort"); got != "" {
			t.Errorf("answer %q, want the connection closed with none", got)
		}
	})
	t.Run("whole request, then half-close", func(t *testing.T) {
		got := exchange(path + "Content-Length: 5\r\n\r\nhello")
		if got == "" {
			return // cancelled by the FIN before it was answered
		}
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
		if err != nil {
			t.Fatalf("answer %q: %v", got, err)
		}
		var r reply
		if err := json.NewDecoder(resp.Body).Decode(&r); resp.StatusCode != http.StatusOK || err != nil || r.Replica == 0 || r.BodyLen != 5 {
			t.Errorf("answer %q; want fakemodel's 200 for a 5-byte body, or none", got)
		}
	})
	var requests uint64
	for _, r := range in.status().Replicas {
		requests += r.Requests
	}
	if requests > 1 {
		t.Errorf("the replicas saw %d requests, want at most the whole one", requests)
	}
}
