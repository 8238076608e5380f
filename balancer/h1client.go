package balancer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1Client is the proxy's upstream transport for HTTP/1.1 backends. The
// handler's goroutine writes the request and reads the response itself,
// on a pooled connection: net/http's Transport gives each connection a
// read loop and a write loop and hands every request and response across
// channels between them and the caller, which cost a proxy that does
// little else about a tenth of its CPU. The request goes out in one
// writev, headers and buffered body together; the response is parsed by
// net/http (http.ReadResponse), so its framing (Content-Length, chunked,
// close-delimited, no body for HEAD, 204 and 304), trailers and 1xx are
// net/http's.
//
// What it keeps of the Transport's behaviour: a connection is reused only
// after its response was read to the end and neither side asked to close
// it; an idle connection is checked before reuse, and one the backend has
// closed is dropped rather than written to (idlePeek); a request that
// found its reused connection closed as it was written (the backend had
// not read a byte of it) is sent once more on a new connection; the
// response-header timeout; a cancelled request ends its connection's
// blocked read or write; 101 Switching Protocols hands the connection
// over as the response body, half-close included; errors are net/http's
// kinds where the proxy tells them apart (a *net.OpError "dial" for a
// connection refused or timed out, a timeout for the header timeout).
type h1Client struct {
	dial          func(ctx context.Context, network, addr string) (net.Conn, error)
	headerTimeout time.Duration // 0: none
	maxIdle       int           // per backend address
	idleTimeout   time.Duration

	mu    sync.Mutex
	idle  map[string][]*h1Conn // by backend address, the most recent last
	sweep *time.Timer          // closes connections idle past idleTimeout; nil when none are idle
}

func newH1Client(o *Options) *h1Client {
	return &h1Client{
		dial: (&net.Dialer{
			Timeout:   o.ConnectTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		headerTimeout: o.UpstreamTimeout,
		maxIdle:       maxIdlePerBackend(o.MostInflight()),
		idleTimeout:   upstreamIdleTimeout,
		idle:          map[string][]*h1Conn{},
	}
}

// h1Conn is one connection to a backend.
type h1Conn struct {
	c         net.Conn
	br        *bufio.Reader
	hdr       []byte      // the request head being written, reused
	iov       [8][]byte   // the writev's vectors, reused
	lr        limitedConn // what br reads: c, limited while a response head is read
	peek      idlePeeker  // idleAlive's
	addr      string
	idleSince time.Time
}

// maxResponseHead bounds what is read of a response's status line and
// header (net/http's Transport reads 10 MB); a backend that sends more is
// broken, and its headers are not held in memory.
const maxResponseHead = 1 << 20

// limitedConn reads from c, at most left bytes when left is not negative:
// a response head's bound.
type limitedConn struct {
	c    net.Conn
	left int64
	over bool // a read found left at 0
}

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.left < 0 {
		return l.c.Read(p)
	}
	if l.left == 0 {
		l.over = true
		return 0, errResponseHeadTooLong
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.c.Read(p)
	l.left -= int64(n)
	return n, err
}

var errResponseHeadTooLong = errors.New("response head too long")

// max1xx is how many interim responses a request may get before its final
// one, as net/http's Transport allows.
const max1xx = 5

// RoundTrip sends req on a connection to req.URL.Host and returns the
// response. Its body returns the connection to the pool when read to the
// end, or closes it when closed before. The proxy's ordinary requests do
// not come this way but through send (relay.go); ReverseProxy's upgrade
// requests do.
func (t *h1Client) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.send(req.Context(), req.URL.Host, req, &transportRequest{req: req, trace: httptrace.ContextClientTrace(req.Context())})
}

// h1Request is a request as the client writes it.
type h1Request interface {
	// appendHead appends the request line and header to b.
	appendHead(b []byte) ([]byte, error)
	// reqBody returns a reader of the body for one write (again, when it
	// is written once more) and its length.
	reqBody(again bool) (io.Reader, int64, error)
	// wrote is told that the request was written, or failed to be.
	wrote(err error)
	// got1xx is told of an interim response.
	got1xx(code int, h http.Header) error
}

// send sends r to addr under ctx; req is r as ReadResponse takes it (its
// method tells whether a body may follow). On a reused connection that
// its backend closed before the request went out, r is sent once more on
// a new one: the backend saw none of it.
func (t *h1Client) send(ctx context.Context, addr string, req *http.Request, r h1Request) (*http.Response, error) {
	for again := false; ; again = true {
		pc, reused, err := t.conn(ctx, addr)
		if err != nil {
			return nil, err
		}
		resp, err := t.roundTrip(ctx, pc, req, r, again)
		if err == nil {
			return resp, nil
		}
		if !reused || again || ctx.Err() != nil || !mayResend(req, err) {
			return nil, unwrapRequestWriteError(err)
		}
	}
}

// mayResend reports whether req, which failed with err on a reused
// connection, may go out again on a new one, by net/http's Transport's
// rules (shouldRetryRequest): when none of it was written, if its body
// can be had again; when the backend closed the connection before a byte
// of its response (its keep-alive timeout, as the request went out, past
// the peek), if, besides, it is idempotent.
func mayResend(req *http.Request, err error) bool {
	var we *requestWriteError
	if errors.As(err, &we) {
		return we.n == 0 && !we.noBody
	}
	var ce *errClosedEarly
	return errors.As(err, &ce) && idempotent(req)
}

// idempotent reports whether req may be delivered twice: its method is
// safe, or it carries an idempotency key (as net/http's Transport tells).
func idempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	_, xkey := req.Header["X-Idempotency-Key"]
	return key || xkey
}

// errClosedEarly is a connection that ended, or failed, before a byte of
// the response to a request written whole: on a reused connection, most
// likely closed by the backend's keep-alive timeout as the request went
// out, unread (net/http's errServerClosedIdle).
type errClosedEarly struct{ err error }

func (e *errClosedEarly) Error() string { return e.err.Error() }
func (e *errClosedEarly) Unwrap() error { return e.err }

// transportRequest is a request given to RoundTrip.
type transportRequest struct {
	req   *http.Request
	trace *httptrace.ClientTrace // nil: none
}

func (r *transportRequest) appendHead(b []byte) ([]byte, error) {
	n, err := outgoingLength(r.req)
	if err != nil {
		return b, err
	}
	return appendRequestHead(b, r.req, n)
}

// outgoingLength returns the length of req's body as it is sent: none
// for a nil body whatever its ContentLength, as net/http's Transport
// sends it. A body of unknown length (chunked) is not written by this
// client: the proxy's are buffered.
func outgoingLength(req *http.Request) (int64, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return 0, nil
	}
	if req.ContentLength < 0 {
		return 0, errors.New("http: a request body of unknown length cannot be sent to an HTTP/1.1 backend")
	}
	return req.ContentLength, nil
}

func (r *transportRequest) reqBody(again bool) (io.Reader, int64, error) {
	if r.req.Body == nil || r.req.Body == http.NoBody || r.req.ContentLength <= 0 {
		return nil, 0, nil
	}
	if !again {
		return r.req.Body, r.req.ContentLength, nil
	}
	if r.req.GetBody == nil {
		return nil, 0, errNoGetBody
	}
	b, err := r.req.GetBody()
	return b, r.req.ContentLength, err
}

var errNoGetBody = errors.New("the request's body cannot be sent again")

func (r *transportRequest) wrote(err error) {
	if r.trace != nil && r.trace.WroteRequest != nil {
		r.trace.WroteRequest(httptrace.WroteRequestInfo{Err: err})
	}
}

func (r *transportRequest) got1xx(code int, h http.Header) error {
	if r.trace != nil && r.trace.Got1xxResponse != nil {
		return r.trace.Got1xxResponse(code, textproto.MIMEHeader(h))
	}
	return nil
}

// requestWriteError is a request that could not be written, after n
// bytes of it; noBody: its body could not be had again.
type requestWriteError struct {
	n      int64
	err    error
	noBody bool
}

func (e *requestWriteError) Error() string { return e.err.Error() }
func (e *requestWriteError) Unwrap() error { return e.err }

// unwrapRequestWriteError returns the error under a requestWriteError or
// an errClosedEarly, the ones the Transport would return.
func unwrapRequestWriteError(err error) error {
	var we *requestWriteError
	if errors.As(err, &we) {
		return we.err
	}
	var ce *errClosedEarly
	if errors.As(err, &ce) {
		return ce.err
	}
	return err
}

// aLongTimeAgo is a deadline that has passed: set on a connection, it
// ends what is blocked on it.
var aLongTimeAgo = time.Unix(1, 0)

// roundTrip sends req on pc. On error pc is closed.
func (t *h1Client) roundTrip(ctx context.Context, pc *h1Conn, req *http.Request, r h1Request, again bool) (*http.Response, error) {
	stop := context.AfterFunc(ctx, func() { _ = pc.c.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, error) {
		stop()
		pc.c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	// A deadline set here may land after the cancel's: the cancel is
	// then done again, so that it is the one that holds.
	setReadDeadline := func(d time.Time) {
		_ = pc.c.SetReadDeadline(d)
		if ctx.Err() != nil {
			_ = pc.c.SetDeadline(aLongTimeAgo)
		}
	}
	werr := pc.writeRequest(r, again)
	r.wrote(unwrapRequestWriteError(werr))
	if werr != nil {
		var we *requestWriteError
		if !errors.As(werr, &we) || we.n == 0 || ctx.Err() != nil {
			return fail(werr)
		}
		// The backend stopped reading part way: it may have answered
		// before the end of the request (a 413 from a size check, a 401)
		// and closed the connection. That answer is its, and is read, as
		// net/http's Transport, which reads while it writes, has it; the
		// connection is not reused.
		setReadDeadline(time.Now().Add(earlyResponseWait))
		resp, err := pc.readResponse(req, r)
		if err != nil || resp.StatusCode == http.StatusSwitchingProtocols {
			return fail(werr)
		}
		setReadDeadline(time.Time{})
		return t.withBody(resp, pc, stop, false), nil
	}
	if t.headerTimeout > 0 {
		setReadDeadline(time.Now().Add(t.headerTimeout))
	}
	resp, err := pc.readResponse(req, r)
	if err != nil {
		return fail(err)
	}
	if t.headerTimeout > 0 {
		setReadDeadline(time.Time{})
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// A switch the request did not ask for, or to another protocol,
		// ReverseProxy refuses without closing the response's body (and
		// relay.go's requests ask for none): the connection is closed
		// here, or it would stay open for as long as the backend keeps
		// it.
		if to, asked := upgradeTo(resp.Header), upgradeTo(req.Header); to == "" || !equalASCIIFold(to, asked) {
			return fail(fmt.Errorf("the backend switched protocols to %q when %q was asked", to, asked))
		}
		// The connection is the response's now: ReverseProxy copies both
		// ways and ends the tunnel when the request's context ends.
		if !stop() {
			return fail(ctx.Err())
		}
		resp.Body = &upgradedConn{br: pc.br, Conn: pc.c}
		return resp, nil
	}
	// The request's Close is not honoured: ReverseProxy never sets it,
	// and the proxy's own requests are written by relay.go.
	return t.withBody(resp, pc, stop, true), nil
}

// earlyResponseWait is how long a request that could not be written
// whole waits for the answer its backend may have sent before it stopped
// reading: one sent is in the socket's buffer already.
const earlyResponseWait = 250 * time.Millisecond

// withBody gives resp the body that releases pc when read to its end,
// kept for the next request when keep and the response allow it.
func (t *h1Client) withBody(resp *http.Response, pc *h1Conn, stop func() bool, keep bool) *http.Response {
	keep = keep && !resp.Close
	if resp.Body == http.NoBody {
		t.release(pc, stop, keep)
		return resp
	}
	resp.Body = &h1Body{ReadCloser: resp.Body, t: t, pc: pc, stop: stop, keep: keep}
	return resp
}

// readResponse reads req's final response head from pc, past at most
// max1xx interim ones, each told to r. An error before a byte of the
// response was read, but for a timeout, is an errClosedEarly.
func (pc *h1Conn) readResponse(req *http.Request, r h1Request) (*http.Response, error) {
	for n1xx := 0; ; n1xx++ {
		pc.lr.left = maxResponseHead
		resp, err := http.ReadResponse(pc.br, req)
		nothingRead := pc.lr.left == maxResponseHead && pc.br.Buffered() == 0
		pc.lr.left = -1
		if err != nil {
			var ne net.Error
			switch {
			case pc.lr.over:
				return nil, fmt.Errorf("the backend's response head is over %d bytes", maxResponseHead)
			case n1xx == 0 && nothingRead && !(errors.As(err, &ne) && ne.Timeout()):
				return nil, &errClosedEarly{err}
			}
			return nil, err
		}
		code := resp.StatusCode
		if code < 100 || code > 199 || code == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if n1xx == max1xx {
			return nil, fmt.Errorf("the backend sent more than %d interim (1xx) responses", max1xx)
		}
		if err := r.got1xx(code, resp.Header); err != nil {
			return nil, err
		}
	}
}

// upgradeTo returns the protocol that h switches, or asks to switch, to,
// as ReverseProxy reads it: the Upgrade header when Connection has the
// upgrade token; "" otherwise.
func upgradeTo(h http.Header) string {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

// equalASCIIFold reports whether a and b are equal, printable ASCII but
// for case (strings.EqualFold would match the Kelvin sign to a k, which
// ReverseProxy then refuses).
func equalASCIIFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if x < ' ' || x > '~' {
			return false
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// release ends pc's use by a request whose response has been read whole:
// kept for the next when keep says it may be, closed otherwise.
func (t *h1Client) release(pc *h1Conn, stop func() bool, keep bool) {
	// A request whose context ended has had its deadline moved into the
	// past, or may have it moved any moment: its connection is not
	// reused.
	if !stop() || !keep || pc.br.Buffered() > 0 {
		pc.c.Close()
		return
	}
	t.put(pc)
}

// h1Body is a response body read from a pooled connection.
type h1Body struct {
	io.ReadCloser
	t    *h1Client
	pc   *h1Conn
	stop func() bool
	keep bool
	done bool // the connection was released or closed
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.done = true
		b.t.release(b.pc, b.stop, b.keep)
	}
	return n, err
}

// Close closes the connection if the body was not read to its end: what
// is left of it would be read by the next request.
func (b *h1Body) Close() error {
	if !b.done {
		b.done = true
		b.stop()
		b.pc.c.Close()
	}
	return nil
}

// upgradedConn is the connection a 101 Switching Protocols handed over:
// what the reader had buffered past the response head first.
type upgradedConn struct {
	br *bufio.Reader // nil once drained
	net.Conn
}

func (u *upgradedConn) Read(p []byte) (int, error) {
	if u.br != nil {
		if n := u.br.Buffered(); n > 0 {
			return u.br.Read(p[:min(len(p), n)])
		}
		u.br = nil
	}
	return u.Conn.Read(p)
}

// CloseWrite half-closes the connection, for a tunnel whose client has
// sent its last byte.
func (u *upgradedConn) CloseWrite() error {
	if cw, ok := u.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("CloseWrite: %w", http.ErrNotSupported)
}

// conn returns an idle connection to addr that the backend has not
// closed, or a new one; reused says which.
func (t *h1Client) conn(ctx context.Context, addr string) (pc *h1Conn, reused bool, err error) {
	now := time.Now()
	for {
		t.mu.Lock()
		list := t.idle[addr]
		if len(list) == 0 {
			t.mu.Unlock()
			break
		}
		pc = list[len(list)-1]
		list[len(list)-1] = nil
		t.idle[addr] = list[:len(list)-1]
		t.mu.Unlock()
		if now.Sub(pc.idleSince) < t.idleTimeout && pc.peek.alive(pc.c) {
			return pc, true, nil
		}
		pc.c.Close()
	}
	c, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	pc = &h1Conn{c: c, addr: addr}
	pc.lr = limitedConn{c: c, left: -1}
	pc.br = bufio.NewReaderSize(&pc.lr, 64<<10)
	return pc, false, nil
}

// put keeps pc idle for the next request to its backend, unless its
// backend has as many idle as it may.
func (t *h1Client) put(pc *h1Conn) {
	pc.idleSince = time.Now()
	t.mu.Lock()
	if len(t.idle[pc.addr]) >= t.maxIdle {
		t.mu.Unlock()
		pc.c.Close()
		return
	}
	t.idle[pc.addr] = append(t.idle[pc.addr], pc)
	if t.sweep == nil {
		t.sweep = time.AfterFunc(t.idleTimeout, t.sweepIdle)
	}
	t.mu.Unlock()
}

// sweepIdle closes the connections idle for idleTimeout (a backend that
// was removed keeps none open), and comes back while some are idle.
func (t *h1Client) sweepIdle() {
	now := time.Now()
	var stale []*h1Conn
	t.mu.Lock()
	for addr, list := range t.idle {
		kept := list[:0]
		for _, pc := range list {
			if now.Sub(pc.idleSince) >= t.idleTimeout {
				stale = append(stale, pc)
			} else {
				kept = append(kept, pc)
			}
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(t.idle, addr)
		} else {
			t.idle[addr] = kept
		}
	}
	t.sweep = nil
	if len(t.idle) > 0 {
		t.sweep = time.AfterFunc(t.idleTimeout/2, t.sweepIdle)
	}
	t.mu.Unlock()
	for _, pc := range stale {
		pc.c.Close()
	}
}

// CloseIdleConnections closes every idle connection.
func (t *h1Client) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = map[string][]*h1Conn{}
	if t.sweep != nil {
		t.sweep.Stop()
		t.sweep = nil
	}
	t.mu.Unlock()
	for _, list := range idle {
		for _, pc := range list {
			pc.c.Close()
		}
	}
}

// writeRequest writes r's head and body to pc: one writev for a body held
// in memory.
func (pc *h1Conn) writeRequest(r h1Request, again bool) error {
	body, n, err := r.reqBody(again)
	if err != nil {
		return &requestWriteError{err: err, noBody: true}
	}
	h, err := r.appendHead(pc.hdr[:0])
	if err != nil {
		return &requestWriteError{err: err}
	}
	pc.hdr = h
	bufs := append(net.Buffers(pc.iov[:0]), h)
	var rest io.Reader
	switch body := body.(type) {
	case nil:
	case *chunkReader:
		bufs = body.appendTo(bufs, n)
		if m := buffersLen(bufs) - int64(len(h)); m != n {
			// Written, the request would leave the backend waiting for
			// the rest, or reading the next request's head as it.
			clear(bufs)
			return fmt.Errorf("http: ContentLength=%d with Body length %d", n, m)
		}
	default:
		rest = body
	}
	written, err := bufs.WriteTo(pc.c)
	if err != nil {
		return &requestWriteError{n: written, err: err}
	}
	if rest != nil {
		m, err := io.CopyN(pc.c, rest, n)
		if err != nil {
			return &requestWriteError{n: written + m, err: err}
		}
	}
	return nil
}

func buffersLen(bufs net.Buffers) int64 {
	var n int64
	for _, b := range bufs {
		n += int64(len(b))
	}
	return n
}

// excludedHeaders are not copied from a request's Header: written from
// its fields, or hop-by-hop ones that a buffered body makes meaningless.
var excludedHeaders = map[string]bool{"Host": true, "User-Agent": true, "Content-Length": true, "Transfer-Encoding": true, "Trailer": true}

// appendRequestHead appends req's request line and header, with a body
// of length bytes, as net/http's Transport writes them, to b. What would
// end or split a line (a method, URI, header name or value that is not
// valid) is refused, as the Transport refuses it.
func appendRequestHead(b []byte, req *http.Request, length int64) ([]byte, error) {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if !validMethod(method) {
		return b, fmt.Errorf("http: invalid method %q", method)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !httpguts.ValidHostHeader(host) {
		return b, fmt.Errorf("http: invalid Host header %q", host)
	}
	uri := req.URL.RequestURI()
	if strings.IndexFunc(uri, isCTL) >= 0 || strings.Contains(uri, " ") {
		return b, fmt.Errorf("http: invalid request URI %q", uri)
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return b, fmt.Errorf("http: invalid header field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				// Not the value: it may be a secret.
				return b, fmt.Errorf("http: invalid header field value for %q", k)
			}
		}
	}
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, uri...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	b = appendAgentAndLength(b, method, req.Header.Get("User-Agent"), length)
	for k, vv := range req.Header {
		if excludedHeaders[k] {
			continue
		}
		for _, v := range vv {
			b = appendHeaderLine(b, k, v)
		}
	}
	return append(b, "\r\n"...), nil
}

func validMethod(m string) bool {
	return m != "" && strings.IndexFunc(m, func(r rune) bool { return !httpguts.IsTokenRune(r) }) < 0
}

func isCTL(r rune) bool { return r < ' ' || r == 0x7f }

// appendAgentAndLength appends a request's User-Agent and Content-Length
// lines as net/http's Transport writes them: no User-Agent when it is
// empty (ReverseProxy blanks one the client did not send, so that Go's is
// not sent), and a Content-Length for a body, or of 0 for a POST, PUT or
// PATCH without one.
func appendAgentAndLength(b []byte, method, ua string, length int64) []byte {
	if ua != "" {
		b = appendHeaderLine(b, "User-Agent", ua)
	}
	if length > 0 || length == 0 && (method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch) {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, length, 10)
		b = append(b, "\r\n"...)
	}
	return b
}

// appendHeaderLine appends "k: v\r\n"; a line break in v (which net/http's
// server never lets through) becomes a space, as the Transport does it.
func appendHeaderLine(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ").Replace(v)
	}
	b = append(b, textproto.TrimString(v)...)
	return append(b, "\r\n"...)
}
