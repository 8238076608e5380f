package balancer

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// dropper is a backend handler that drops the connection without answering,
// as a replica dying mid-request does.
func dropper(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) }

func TestRetries(t *testing.T) {
	tests := []struct {
		name      string
		first     string // "refuse" or "drop"
		second    string // "ok", "drop" or "refuse"
		retries   int
		wantCode  int
		wantHits  int // requests reaching the second backend
		wantRetry uint64
	}{
		{"refused then ok", "refuse", "ok", 2, 200, 1, 1},
		{"dropped then ok", "drop", "ok", 2, 200, 1, 1},
		{"retries off", "refuse", "ok", 0, 502, 0, 0},
		{"poison input dies twice: no third try", "drop", "drop", 2, 502, 1, 1},
		// The second stays in rotation (the panic threshold) and is
		// tried until the retries run out.
		{"refused twice", "refuse", "refuse", 2, 502, 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mk := func(id int, kind string) (*Backend, *testBackend) {
				switch kind {
				case "refuse":
					return NewBackend(id, "replica-"+string(rune('0'+id)), closedAddr(t)), nil
				case "drop":
					tb := newTestBackend(t, id, dropper)
					return tb.Backend, tb
				default:
					tb := newTestBackend(t, id, nil)
					return tb.Backend, tb
				}
			}
			b1, _ := mk(1, tt.first)
			b2, tb2 := mk(2, tt.second)
			// Round robin makes the first choice b1.
			bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.Policy = &RoundRobin{}; o.Retries = tt.retries }), b1, b2)
			resp, err := srv.Client().Post(srv.URL+"/api", "application/json", strings.NewReader(`{"image":"x"}`))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantCode)
			}
			hits := 0
			if tb2 != nil {
				hits = int(tb2.hits.Load())
			}
			if hits != tt.wantHits {
				t.Errorf("second backend saw %d requests, want %d", hits, tt.wantHits)
			}
			if s := bal.Stats(); s.Retried != tt.wantRetry {
				t.Errorf("Retried = %d, want %d", s.Retried, tt.wantRetry)
			}
			// The backend that failed is out of rotation and reported.
			select {
			case <-b1.Failed():
			default:
				t.Errorf("first backend not reported on Failed()")
			}
			if tt.wantCode == 502 {
				if s := bal.Stats(); s.Failed != 1 {
					t.Errorf("Failed = %d, want 1", s.Failed)
				}
			}
		})
	}
}

// TestRetryKeepsBody: the retried request carries the whole body.
func TestRetryKeepsBody(t *testing.T) {
	b1 := NewBackend(1, "replica-1", closedAddr(t))
	b2 := newTestBackend(t, 2, echo)
	_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.Policy = &RoundRobin{}; o.Retries = 1 }), b1, b2.Backend)
	body := strings.Repeat("x", 300<<10)
	resp, err := srv.Client().Post(srv.URL+"/p", "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e echoed
	if err := decodeJSON(resp, &e); err != nil || string(e.Body) != body {
		t.Fatalf("retried request lost its body: status %d, %d bytes, %v", resp.StatusCode, len(e.Body), err)
	}
}

func decodeJSON(resp *http.Response, v any) error {
	return json.NewDecoder(resp.Body).Decode(v)
}

// TestUpgradeIsNotAFailure: a backend switching protocols (WebSocket) is
// proxied as such, not taken for a dead backend.
func TestUpgradeIsNotAFailure(t *testing.T) {
	be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello")
		brw.Flush()
	})
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.Retries = 2 }), be.Backend)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade through the proxy: %v, %v", resp, err)
	}
	rest := make([]byte, 5)
	if _, err := io.ReadFull(br, rest); err != nil || string(rest) != "hello" {
		t.Fatalf("upgraded stream: %q, %v", rest, err)
	}
	select {
	case <-be.Failed():
		t.Fatal("an upgrading backend was reported failed")
	default:
	}
	if s := bal.Stats(); s.Retried != 0 || s.Failed != 0 {
		t.Errorf("stats after an upgrade: %+v", s)
	}
}
