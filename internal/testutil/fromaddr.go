package testutil

import (
	"net"
	"time"
)

// FromAddr returns a dialer whose connections come from the loopback
// address ip: Linux routes all of 127.0.0.0/8 to lo, so one process can be
// several clients, each with its own per-address share.
func FromAddr(ip string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
}
