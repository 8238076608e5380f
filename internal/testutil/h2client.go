package testutil

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// H2Client is a bare HTTP/2 client connection over cleartext with prior
// knowledge (h2c), frame by frame, for tests that need what no client
// library offers: a flow-control window of zero that never opens, as a
// client that reads nothing has, or the frames that ended a stream
// (RST_STREAM rather than an error). A goroutine reads the server's
// frames until the connection closes: it answers SETTINGS and PING, and
// records each stream's status, data and end.
type H2Client struct {
	conn   net.Conn
	window uint32 // the streams' initial window; 0: never opened

	// mu guards the fields below and the writes to the connection.
	mu      sync.Mutex
	fr      *http2.Framer
	enc     *hpack.Encoder
	hbuf    bytes.Buffer
	next    uint32
	streams map[uint32]*H2Stream
	err     error // why reading ended

	done chan struct{} // closed when reading has ended
}

// H2Stream is what an H2Client has seen of one stream.
type H2Stream struct {
	Status string // the response's :status; empty until its headers came
	Data   int    // bytes of DATA received
	// Ended is set when the stream ended with END_STREAM, Reset when it
	// ended with RST_STREAM, whose code is ResetCode.
	Ended     bool
	Reset     bool
	ResetCode http2.ErrCode
}

// DialH2 connects to addr and opens HTTP/2 with a SETTINGS frame whose
// SETTINGS_INITIAL_WINDOW_SIZE is window. With window 0 the client never
// sends WINDOW_UPDATE: the server can send no DATA on any stream. With a
// window, it gives back what it receives, on the stream and the
// connection, as a client that reads does.
func DialH2(addr string, window uint32) (*H2Client, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &H2Client{conn: conn, window: window, next: 1, streams: map[uint32]*H2Stream{}, done: make(chan struct{})}
	c.fr = http2.NewFramer(conn, conn)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: window}); err != nil {
		conn.Close()
		return nil, err
	}
	go c.read()
	return c, nil
}

// Get opens a stream with GET path and returns its id.
func (c *H2Client) Get(path string) (uint32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.next
	c.next += 2
	c.hbuf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", c.conn.RemoteAddr().String()}, {":path", path}} {
		_ = c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	c.streams[id] = &H2Stream{}
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndStream: true, EndHeaders: true})
	return id, err
}

// Stream returns what has been seen of stream id.
func (c *H2Client) Stream(id uint32) H2Stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.streams[id]; s != nil {
		return *s
	}
	return H2Stream{}
}

// Err returns why reading ended (the connection closed), or nil while it
// goes on.
func (c *H2Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection and waits for reading to end.
func (c *H2Client) Close() error {
	err := c.conn.Close()
	<-c.done
	return err
}

func (c *H2Client) read() {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		c.mu.Lock()
		if err != nil {
			c.err = err
			c.mu.Unlock()
			return
		}
		c.handle(f)
		c.mu.Unlock()
	}
}

// handle records f; mu is held.
func (c *H2Client) handle(f http2.Frame) {
	s := c.streams[f.Header().StreamID]
	if s == nil {
		s = &H2Stream{} // stream 0's frames, or one not opened here
	}
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if !f.IsAck() {
			_ = c.fr.WriteSettingsAck()
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			_ = c.fr.WritePing(true, f.Data)
		}
	case *http2.MetaHeadersFrame:
		if st := f.PseudoValue("status"); st != "" && s.Status == "" {
			s.Status = st
		}
		s.Ended = s.Ended || f.StreamEnded()
	case *http2.DataFrame:
		n := len(f.Data())
		s.Data += n
		s.Ended = s.Ended || f.StreamEnded()
		if c.window > 0 && n > 0 {
			_ = c.fr.WriteWindowUpdate(0, uint32(n))
			if !f.StreamEnded() {
				_ = c.fr.WriteWindowUpdate(f.StreamID, uint32(n))
			}
		}
	case *http2.RSTStreamFrame:
		s.Reset, s.ResetCode = true, f.ErrCode
	}
}

// String describes s, for test failures.
func (s H2Stream) String() string {
	switch {
	case s.Reset:
		return fmt.Sprintf("status %q, %d bytes, reset with %v", s.Status, s.Data, s.ResetCode)
	case s.Ended:
		return fmt.Sprintf("status %q, %d bytes, ended", s.Status, s.Data)
	}
	return fmt.Sprintf("status %q, %d bytes, open", s.Status, s.Data)
}
