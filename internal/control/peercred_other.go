//go:build !linux && !darwin && !freebsd

package control

import "net"

// peerUID cannot read a peer's credentials here; the callers fall back on
// the socket file's owner and mode.
func peerUID(net.Conn) (int, error) { return 0, errPeerCredUnsupported }
