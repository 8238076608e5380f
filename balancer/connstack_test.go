package balancer

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestIdleConnectionStackStaysSmall: a keep-alive connection that was
// proxied a request and then waits for its next keeps half the stack it
// would with its requests proxied on its own goroutine (4 KiB, not 8 KiB;
// 8 and 16 under the race detector).
func TestIdleConnectionStackStaysSmall(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's stacks are larger, and vary")
	}
	apart := idleStackPerConn(t, true)
	inline := idleStackPerConn(t, false)
	t.Logf("stack per idle connection: %.0f bytes, %.0f with the handler on the connection's goroutine", apart, inline)
	if apart > 0.75*inline { // about half; noisy, as the runtime caches stacks
		t.Errorf("stack per idle connection %.0f bytes, want about half of the %.0f with the handler on the connection's goroutine", apart, inline)
	}
}

// idleStackPerConn is the stack each of 500 keep-alive connections keeps
// once it has been proxied a request and waits for its next, with the
// proxy's handler run on its own goroutine or on the connection's.
func idleStackPerConn(t *testing.T, apart bool) float64 {
	const n = 500
	be := newTestBackend(t, 1, nil)
	bal := New(testOptions(nil))
	bal.Add(be.Backend)
	if !apart {
		bal.server.Handler = bal.server.Handler.(ownGoroutine).next
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- bal.Serve(ln) }()
	addr := ln.Addr().String()
	defer func() { // every connection's goroutine ended, for the next measurement
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = bal.Shutdown(ctx)
		<-served
	}()

	stacks := func() uint64 {
		runtime.GC() // shrinks the stacks that can be
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.StackInuse
	}
	before := stacks()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	time.Sleep(100 * time.Millisecond) // every connection back in its wait for the next request
	return float64(stacks()-before) / n
}

// TestHandlerPanicsOnItsConnectionsGoroutine: a panic in a handler run on
// its own goroutine is recovered by net/http as a handler's own would be:
// the connection is closed, http.ErrAbortHandler silently, anything else
// logged with the handler's stack.
func TestHandlerPanicsOnItsConnectionsGoroutine(t *testing.T) {
	for _, tt := range []struct {
		name    string
		value   any
		wantLog []string
	}{
		{"ErrAbortHandler", http.ErrAbortHandler, nil},
		{"a string", "boom", []string{"boom", "handler goroutine", "panickingHandler"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var logged bytes.Buffer
			srv := &http.Server{
				Handler:  ownGoroutine{panickingHandler{tt.value}},
				ErrorLog: log.New(lockedWriter{&mu, &logged}, "", 0),
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = srv.Serve(ln) }()
			t.Cleanup(func() { srv.Close() })
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
			resp, err := client.Get("http://" + ln.Addr().String())
			if err == nil {
				resp.Body.Close()
				t.Fatalf("answered %s; want the connection closed", resp.Status)
			}
			time.Sleep(50 * time.Millisecond) // net/http logs after it has closed the connection
			mu.Lock()
			got := logged.String()
			mu.Unlock()
			if tt.wantLog == nil && got != "" {
				t.Errorf("logged %q; want nothing", got)
			}
			for _, want := range tt.wantLog {
				if !strings.Contains(got, want) {
					t.Errorf("log %q does not contain %q", got, want)
				}
			}
		})
	}
}

type panickingHandler struct{ value any }

func (p panickingHandler) ServeHTTP(http.ResponseWriter, *http.Request) { panic(p.value) }

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
