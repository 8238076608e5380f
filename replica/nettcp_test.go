package replica

import (
	"encoding/binary"
	"net/netip"
	"reflect"
	"testing"
)

// A /proc/PID/net/tcp and tcp6 of a little-endian host: a Flask app on
// 127.0.0.1:5000 (inode 31337), someone else's listener on 0.0.0.0:22, a
// connection of the app's, and an IPv6 listener on [::]:8080 (inode 4242).
const (
	netTCPFixture = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 31337 1 0000000000000000 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1388 0100007F:D4A2 01 00000000:00000000 00:00000000 00000000  1000        0 31338 1 0000000000000000 20 4 30 10 -1
`
	netTCP6Fixture = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:2329 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0000000000000000 100 0 0 10 0
`
)

func littleEndian() bool { return binary.NativeEndian.Uint16([]byte{1, 0}) == 1 }

func TestParseListening(t *testing.T) {
	if !littleEndian() {
		t.Skip("the fixture is of a little-endian host")
	}
	owners := map[uint64]int{31337: 4242, 31338: 4242, 4242: 7, 4343: 8}
	got := parseListening(netTCPFixture, owners)
	want := []listenSocket{{Pid: 4242, Addr: netip.MustParseAddrPort("127.0.0.1:5000")}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tcp: %v, want %v (listening, owned sockets only)", got, want)
	}
	got = parseListening(netTCP6Fixture, owners)
	want = []listenSocket{
		{Pid: 7, Addr: netip.MustParseAddrPort("[::]:8080")},
		{Pid: 8, Addr: netip.MustParseAddrPort("127.0.0.1:9001")}, // v4-mapped
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tcp6: %v, want %v", got, want)
	}
	if got := parseListening("garbage\n  0: zz:1 00:0 0A a b c d e 31337\n", owners); len(got) != 0 {
		t.Errorf("garbage: %v, want nothing", got)
	}
}

func TestParseProcAddr(t *testing.T) {
	if !littleEndian() {
		t.Skip("the addresses are of a little-endian host")
	}
	for in, want := range map[string]string{
		"0100007F:1388":                         "127.0.0.1:5000",
		"00000000:0050":                         "0.0.0.0:80",
		"00000000000000000000000001000000:0016": "[::1]:22",
		"B80D0120000000000000000001000000:01BB": "[2001:db8::1]:443",
	} {
		got, err := parseProcAddr(in)
		if err != nil || got.String() != want {
			t.Errorf("parseProcAddr(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"0100007F", "0100007F:zz", "01007F:1388", "xyz:0050"} {
		if _, err := parseProcAddr(in); err == nil {
			t.Errorf("parseProcAddr(%q): no error", in)
		}
	}
}
