package balancer

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
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
	for _, adaptive := range []bool{false, true} {
		for _, tt := range tests {
			name := tt.name
			if adaptive {
				name += " (auto)"
			}
			t.Run(name, func(t *testing.T) {
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
				bal, srv := newTestBalancer(t, testOptions(func(o *Options) {
					o.Policy = &RoundRobin{}
					o.Retries = tt.retries
					if adaptive { // learned caps change nothing here
						o.AdaptiveInflight, o.Queue = DefaultAdaptiveInflight, 10
					}
				}), b1, b2)
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

// The tests below are tables over retry.go's decisions: no server, no
// connection.

// timeoutErr is a net.Error that timed out.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want failure
	}{
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, refused},
		{"no connection within the connect timeout", &net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}}, busy},
		{"wrapped dial error", fmt.Errorf("proxy: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), refused},
		{"read timeout", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, slow},
		{"upstream deadline", context.DeadlineExceeded, slow},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, dropped},
		{"closed before any response", io.EOF, dropped},
		{"unexpected EOF", io.ErrUnexpectedEOF, dropped},
		{"anything else", errors.New("net/http: HTTP/1.x transport connection broken"), dropped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err); got != tt.want {
				t.Errorf("classify(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestFailureOf(t *testing.T) {
	refusedErr := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	resetErr := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	tests := []struct {
		name      string
		err       error
		responded bool
		alive     bool
		onlyH2C   bool
		want      failure
		asked     string // which of alive and onlyH2C are asked, in order
	}{
		{"refused by a dead backend", refusedErr, false, false, false, refused, "alive"},
		{"refused by a live one: busy", refusedErr, false, true, false, busy, "alive"},
		{"reset by a dead backend: it died", resetErr, false, false, false, dropped, "alive"},
		{"reset by a live one: reset", resetErr, false, true, false, reset, "alive h2c"},
		{"closed by a live one: reset", io.EOF, false, true, false, reset, "alive h2c"},
		{"reset by a live h2c-only one: wrong protocol", resetErr, false, true, true, wrongProtocol, "alive h2c"},
		{"refused by a live h2c-only one: busy", refusedErr, false, true, true, busy, "alive"},
		{"reset after responding: as classified", resetErr, true, true, false, dropped, ""},
		{"slow is slow, alive or not", os.ErrDeadlineExceeded, false, true, false, slow, ""},
		{"busy from the connect timeout, without asking", &net.OpError{Op: "dial", Err: timeoutErr{}}, false, false, false, busy, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked []string
			got := failureOf(tt.err, tt.responded,
				func() bool { asked = append(asked, "alive"); return tt.alive },
				func() bool { asked = append(asked, "h2c"); return tt.onlyH2C })
			if got != tt.want || strings.Join(asked, " ") != tt.asked {
				t.Errorf("failureOf = %v (asked %q), want %v (asked %q)", got, asked, tt.want, tt.asked)
			}
		})
	}
}

func TestTryAgain(t *testing.T) {
	now := time.Now()
	later, earlier := now.Add(time.Second), now.Add(-time.Second)
	none := time.Time{}
	tests := []struct {
		name      string
		f         failure
		responded bool
		s         retryState // this failure included
		retries   int
		deadline  time.Time
		want      bool
	}{
		{"refused, first retry", refused, false, retryState{retries: 1}, 2, none, true},
		{"died, first retry", dropped, false, retryState{retries: 1, harms: 1}, 2, none, true},
		{"reset, first retry", reset, false, retryState{retries: 1, harms: 1}, 2, none, true},
		{"retries off", refused, false, retryState{retries: 1}, 0, none, false},
		{"retries off, busy", busy, false, retryState{}, 0, later, false},
		{"retries off, reset", reset, false, retryState{retries: 1, harms: 1}, 0, later, false},
		{"last retry", refused, false, retryState{retries: 2}, 2, none, true},
		{"retries used up", refused, false, retryState{retries: 3}, 2, none, false},
		{"resets count against the retries", reset, false, retryState{retries: 3, harms: 1}, 2, later, false},
		{"died a second time: poison input", dropped, false, retryState{retries: 2, harms: 2}, 5, none, false},
		{"reset a second time: poison input", reset, false, retryState{retries: 2, harms: 2}, 5, later, false},
		{"reset, then died", dropped, false, retryState{retries: 2, harms: 2}, 5, none, false},
		{"refused after a death", refused, false, retryState{retries: 2, harms: 1}, 5, none, true},
		{"slow: never", slow, false, retryState{retries: 1}, 2, none, false},
		{"wrong protocol: never", wrongProtocol, false, retryState{retries: 1}, 2, later, false},
		{"after the backend responded: never", dropped, true, retryState{retries: 1}, 2, none, false},
		{"busy, within the queue timeout", busy, false, retryState{retries: 2}, 2, later, true},
		{"busy, past the queue timeout", busy, false, retryState{}, 2, earlier, false},
		{"busy, no queue timeout", busy, false, retryState{}, 2, none, true},
		{"busy, even with the retries used up", busy, false, retryState{retries: 9}, 2, none, true},
		{"busy after responding", busy, true, retryState{}, 2, later, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tryAgain(tt.f, tt.responded, tt.s, tt.retries, tt.deadline, now); got != tt.want {
				t.Errorf("tryAgain = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRetryStateAfter(t *testing.T) {
	type fail struct {
		f  failure
		bl blame
	}
	tests := []struct {
		name     string
		fails    []fail
		want     retryState
		poisoned bool
	}{
		{"nothing yet", nil, retryState{}, false},
		{"busy is not counted", []fail{{busy, innocent}, {busy, innocent}}, retryState{}, false},
		{"refused counts", []fail{{refused, innocent}, {busy, innocent}, {refused, innocent}}, retryState{retries: 2}, false},
		{"every delivery counts", []fail{{reset, shared}, {slow, innocent}}, retryState{retries: 2, harms: 1}, false},
		{"a death and a reset: poisoned", []fail{{dropped, alone}, {refused, innocent}, {reset, alone}}, retryState{retries: 3, harms: 2, blamed: 2}, true},
		{"two resets, one alone", []fail{{reset, alone}, {reset, shared}}, retryState{retries: 2, harms: 2, blamed: 1}, true},
		{"deaths its owner caused: no harm", []fail{{dropped, innocent}, {dropped, innocent}}, retryState{retries: 2}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s retryState
			for _, f := range tt.fails {
				s = s.after(f.f, f.bl)
			}
			if s != tt.want || s.poisoned() != tt.poisoned {
				t.Errorf("after %v: %+v (poisoned %v), want %+v (%v)", tt.fails, s, s.poisoned(), tt.want, tt.poisoned)
			}
		})
	}
}

func TestAlive(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		answers []bool // what Alive says, call after call; nil: no Alive
		ctx     context.Context
		want    bool
		calls   int
		settle  bool // whether it waits aliveSettle first
	}{
		{"no Alive: dead", nil, context.Background(), false, 0, false},
		{"dead at once", []bool{false}, context.Background(), false, 1, false},
		{"alive after the settle: busy", []bool{true, true}, context.Background(), true, 2, true},
		{"died during the settle", []bool{true, false}, context.Background(), false, 2, true},
		{"client gone: asks again at once", []bool{true, true}, cancelled, true, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be := NewBackend(1, "replica-1", "127.0.0.1:1")
			calls := 0
			if tt.answers != nil {
				be.Alive = func() bool { calls++; return tt.answers[calls-1] }
			}
			start := time.Now()
			got := (&Balancer{}).alive(tt.ctx, be)
			waited := time.Since(start)
			if got != tt.want || calls != tt.calls {
				t.Errorf("alive = %v after %d calls, want %v after %d", got, calls, tt.want, tt.calls)
			}
			if tt.settle && waited < aliveSettle {
				t.Errorf("answered after %s, before the settle of %s", waited, aliveSettle)
			}
		})
	}
}
