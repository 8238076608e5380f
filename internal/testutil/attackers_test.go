package testutil

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

func TestDripSendsAByteThenWaitsUntilClosed(t *testing.T) {
	d := NewDrip(time.Hour)
	p := make([]byte, 8)
	if n, err := d.Read(p); n != 1 || err != nil || p[0] != 'x' {
		t.Fatalf("first Read: %d %q, %v; want one byte at once", n, p[:n], err)
	}
	got := make(chan error, 1)
	go func() { _, err := d.Read(p); got <- err }()
	select {
	case err := <-got:
		t.Fatalf("second Read returned (%v) before its hour", err)
	case <-time.After(50 * time.Millisecond):
	}
	d.Close()
	d.Close() // twice is allowed
	select {
	case err := <-got:
		if err != io.EOF {
			t.Errorf("Read after Close: %v, want io.EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the waiting Read")
	}
}

// listen returns a loopback listener closed when t ends.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestNonReadingGetSendsTheRequest(t *testing.T) {
	ln := listen(t)
	conn, err := NonReadingGet(ln.Addr().String(), "/?size=20MiB")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	_ = srv.SetDeadline(time.Now().Add(5 * time.Second))
	req, err := http.ReadRequest(bufio.NewReader(srv))
	if err != nil || req.Method != http.MethodGet || req.URL.String() != "/?size=20MiB" {
		t.Fatalf("the server read %v, %v; want GET /?size=20MiB", req, err)
	}
	// The client reads nothing: the server's writes stop once the
	// buffers between them are full, far short of 20 MiB.
	_ = srv.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	n, err := srv.Write(make([]byte, 20<<20))
	if err == nil || n >= 20<<20 {
		t.Errorf("wrote %d bytes to a client that reads nothing (%v)", n, err)
	}
}

func TestRapidResetOpensAndResetsEachStream(t *testing.T) {
	ln := listen(t)
	type tally struct{ headers, resets, mismatched int }
	seen := make(chan tally, 1)
	go func() {
		var n tally
		defer func() { seen <- n }()
		srv, err := ln.Accept()
		if err != nil {
			return
		}
		defer srv.Close()
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(srv, preface); err != nil || string(preface) != http2.ClientPreface {
			n.mismatched++
			return
		}
		fr := http2.NewFramer(io.Discard, srv)
		last := uint32(0)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.HeadersFrame:
				n.headers++
				last = f.StreamID
			case *http2.RSTStreamFrame:
				n.resets++
				if f.StreamID != last || f.ErrCode != http2.ErrCodeCancel {
					n.mismatched++
				}
			}
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	if err := RapidReset(conn, "/attack", time.Now().Add(100*time.Millisecond), &sent); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	n := <-seen
	if sent.Load() == 0 || n.headers != int(sent.Load()) || n.resets != n.headers || n.mismatched != 0 {
		t.Errorf("sent %d; the server saw %d HEADERS, %d RST_STREAM, %d out of order; want each stream opened then cancelled",
			sent.Load(), n.headers, n.resets, n.mismatched)
	}
}

// echoWebSocket is the least WebSocket server that answers Echo: it
// checks nothing and echoes one short frame, unmasked.
func echoWebSocket(w http.ResponseWriter, r *http.Request) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	accept := r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
	if r.URL.Query().Get("wrong") != "" {
		accept = "not the key"
	}
	sum := sha1.Sum([]byte(accept))
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n")
	_ = brw.Flush()
	var h [6]byte // a short client frame: two bytes, then the mask
	if _, err := io.ReadFull(brw, h[:]); err != nil {
		return
	}
	payload := make([]byte, h[1]&0x7F)
	if _, err := io.ReadFull(brw, payload); err != nil {
		return
	}
	for i := range payload {
		payload[i] ^= h[2+i%4]
	}
	_, _ = conn.Write(append([]byte{0x81, byte(len(payload))}, payload...))
}

func TestDialWebSocketAndEcho(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/busy" {
			http.Error(w, "full", http.StatusServiceUnavailable)
			return
		}
		echoWebSocket(w, r)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	c, code, err := DialWebSocket(addr, "/ws", 5*time.Second)
	if err != nil || code != http.StatusSwitchingProtocols {
		t.Fatalf("DialWebSocket: %d, %v; want 101", code, err)
	}
	defer c.Close()
	if err := c.Echo("hello"); err != nil {
		t.Error(err)
	}

	if c, code, err := DialWebSocket(addr, "/busy", 5*time.Second); c != nil || code != http.StatusServiceUnavailable || err != nil {
		t.Errorf("a 503 answer: %v, %d, %v; want no connection, 503 and no error", c, code, err)
	}
	if c, _, err := DialWebSocket(addr, "/ws?wrong=1", 5*time.Second); c != nil || err == nil {
		t.Errorf("an Accept that does not answer the key: %v, %v; want an error", c, err)
	}
}
