package supervisor

import (
	"net"
	"os"
	"strconv"

	"github.com/mattingctl/mattingctl/internal/control"
)

// proxyURL returns the URL a person on this machine or another would use
// to reach the proxy listening on host:port, and whether host means every
// interface: then no address in it is the one to use, and the URL names
// this machine by its hostname (127.0.0.1 when it has none).
func proxyURL(tls bool, host string, port int) (url string, allInterfaces bool) {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	if control.AllInterfaces(host) {
		allInterfaces = true
		host = "127.0.0.1"
		if h, err := os.Hostname(); err == nil && h != "" {
			host = h
		}
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/", allInterfaces
}
