package admin

import (
	"net"
	"net/http"
	"testing"
	"time"
)

// TestListenInUse: an admin port that is taken is one line naming the
// address and --admin, the flag that moves or turns off the listener.
func TestListenInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	srv, err := Listen(addr, 8)
	if srv != nil {
		t.Fatal("Listen succeeded on a port in use")
	}
	want := "admin listener " + addr + ": already in use; choose another with --admin HOST:PORT, or --admin none"
	if err == nil || err.Error() != want {
		t.Errorf("Listen(%s) = %v, want %q", addr, err, want)
	}
}

// TestListenerCapAndTimeouts: the admin listener holds at most its cap of
// connections, whatever they do (here: connect and send nothing); the
// next waits in the backlog and is served once one closes. Each has a
// header, read, write and idle timeout, so none holds a slot for ever.
func TestListenerCapAndTimeouts(t *testing.T) {
	const maxConns = 3
	a, err := Listen("127.0.0.1:0", maxConns)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	src := &fakeSource{rd: Readiness{Ready: 1, MinReady: 1}}
	a.Start(src, nil, nil)
	if srv := newHTTPServer(nil); srv.ReadHeaderTimeout != 5*time.Second || srv.ReadTimeout != 10*time.Second || srv.WriteTimeout != 30*time.Second ||
		srv.IdleTimeout != 30*time.Second || srv.MaxHeaderBytes != 16<<10 {
		t.Errorf("timeouts: header %s, read %s, write %s, idle %s, max header bytes %d",
			srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range maxConns {
		c, err := net.Dial("tcp", a.Addr())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	probe := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := probe.Get("http://" + a.Addr() + "/livez"); err == nil {
		resp.Body.Close()
		t.Fatalf("answered %s with %d connections open, the cap", resp.Status, maxConns)
	}
	held[0].Close()
	held = held[1:]
	probe.Timeout = 5 * time.Second
	resp, err := probe.Get("http://" + a.Addr() + "/livez")
	if err != nil {
		t.Fatalf("/livez once a connection closed: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/livez: %s", resp.Status)
	}
}
