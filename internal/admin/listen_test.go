package admin

import (
	"net"
	"testing"
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
	srv, err := Listen(addr)
	if srv != nil {
		t.Fatal("Listen succeeded on a port in use")
	}
	want := "admin listener " + addr + ": already in use; choose another with --admin HOST:PORT, or --admin none"
	if err == nil || err.Error() != want {
		t.Errorf("Listen(%s) = %v, want %q", addr, err, want)
	}
}
