//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package balancer

import "net"

// idlePeeker cannot peek here: an idle connection is taken for open, and
// a request that finds it closed as it is written is sent again on a new
// one (h1Client.RoundTrip).
type idlePeeker struct{}

func (idlePeeker) alive(net.Conn) bool { return true }
