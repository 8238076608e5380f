package testutil

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// WebSocket is a client WebSocket connection, to fakemodel's /ws for
// instance, which echoes every message.
type WebSocket struct {
	net.Conn
	br *bufio.Reader
}

// DialWebSocket opens a WebSocket to path at addr. It returns the
// connection on 101, with its Sec-WebSocket-Accept checked, or a nil
// connection and the status the server answered instead. The connection
// has a deadline timeout from now, so that a caller fails rather than
// hangs; SetDeadline moves it.
func DialWebSocket(addr, path string, timeout time.Duration) (*WebSocket, int, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, 0, err
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, key); err != nil {
		conn.Close()
		return nil, 0, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, 0, fmt.Errorf("WebSocket handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body.Close()
		conn.Close()
		return nil, resp.StatusCode, nil
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != base64.StdEncoding.EncodeToString(sum[:]) {
		conn.Close()
		return nil, resp.StatusCode, fmt.Errorf("Sec-WebSocket-Accept %q does not answer the key", got)
	}
	return &WebSocket{conn, br}, resp.StatusCode, nil
}

// Echo sends msg, at most 125 bytes, as a masked text frame and checks
// that the same text comes back.
func (c *WebSocket) Echo(msg string) error {
	if len(msg) > 125 {
		return errors.New("echo sends short messages only")
	}
	mask := [4]byte{1, 2, 3, 4}
	frame := append([]byte{0x81, 0x80 | byte(len(msg))}, mask[:]...)
	for i := 0; i < len(msg); i++ {
		frame = append(frame, msg[i]^mask[i%4])
	}
	if _, err := c.Write(frame); err != nil {
		return fmt.Errorf("sending %q: %w", msg, err)
	}
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return fmt.Errorf("reading the echo of %q: %w", msg, err)
	}
	n := int(h[1] & 0x7F)
	if n == 126 {
		var ext [2]byte
		_, _ = io.ReadFull(c.br, ext[:])
		n = int(binary.BigEndian.Uint16(ext[:]))
	}
	got := make([]byte, n)
	if _, err := io.ReadFull(c.br, got); err != nil || h[0] != 0x81 || string(got) != msg {
		return fmt.Errorf("echo of %q: frame %#x %q, %v", msg, h[0], got, err)
	}
	return nil
}
