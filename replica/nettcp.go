package replica

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// tcpListen is the state column's value of a listening socket in
// /proc/net/tcp and /proc/net/tcp6.
const tcpListen = "0A"

// parseListening returns the listening sockets of table, the text of a
// /proc/PID/net/tcp or tcp6 file, whose inode owners maps to a pid, with
// that pid. Lines it cannot read are skipped.
func parseListening(table string, owners map[uint64]int) []listenSocket {
	var out []listenSocket
	for _, line := range strings.Split(table, "\n") {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != tcpListen {
			continue // the header, or a connection
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			continue
		}
		pid, ok := owners[inode]
		if !ok {
			continue // another process's
		}
		addr, err := parseProcAddr(f[1])
		if err != nil {
			continue
		}
		out = append(out, listenSocket{Pid: pid, Addr: addr})
	}
	return out
}

// parseProcAddr reads an address of /proc/net/tcp{,6}: the IP in hex, as
// 32-bit words each printed in the host's byte order, a colon, and the
// port in hex: 0100007F:1388 is 127.0.0.1:5000 on a little-endian host.
func parseProcAddr(s string) (netip.AddrPort, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address %q: no port", s)
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: port: %w", s, err)
	}
	raw, err := hex.DecodeString(ipHex)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q: not an IPv4 or IPv6 address in hex", s)
	}
	// Each word was printed as a number read from memory in the host's
	// order; writing it back in that order gives the address's bytes.
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(raw[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	ip, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}
