package balancer

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The proxy's ordinary requests to HTTP/1.1 replicas do not go through
// httputil.ReverseProxy: relay does what it does for them, without its
// copy of each request (a clone of its header, URL and context) and
// without building a header that is only written out. It writes the
// client's header, less its hop-by-hop fields, with the forwarding ones
// (X-Forwarded-For, -Host, -Proto) straight into the request head, and
// relays the response as ReverseProxy does: interim responses, the header
// less its hop-by-hop fields, the body (a stream flushed after each
// write), the trailers, and an abort when the body breaks off. Upgrade
// requests, and every request to h2c replicas, still go through
// ReverseProxy (proxy.go).

// relay sends attempt a of x to its backend over c and relays the
// response to w; a.err is set when the backend sent no response.
func (b *Balancer) relay(ctx context.Context, w http.ResponseWriter, r *http.Request, body *bufferedBody, a *attempt, c *h1Client) {
	a.r, a.w, a.in = r, w, body
	resp, err := c.send(ctx, a.be.Addr, r, a)
	if err != nil {
		a.err = err
		return
	}
	// The trailers announced, before the body is read: a read-ahead
	// (spool.go) reads it in a goroutine of its own from modifyResponse
	// on, and fills resp.Trailer at its end.
	announced := len(resp.Trailer)
	var keys []string
	for k := range resp.Trailer {
		keys = append(keys, k)
	}
	_ = a.modifyResponse(resp)
	removeHopByHop(resp.Header)
	h := w.Header()
	for k, vv := range resp.Header {
		if cur := h[k]; len(cur) > 0 {
			h[k] = append(cur, vv...)
		} else {
			h[k] = vv
		}
	}
	if announced > 0 {
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(resp.StatusCode)
	if err := copyBody(w, resp); err != nil {
		resp.Body.Close()
		if !isCanceled(err) {
			b.cfg().Logger.Debug("response broken off", "replica", a.be.Name, "error", err)
		}
		abort()
	}
	resp.Body.Close() // now, to have the trailers
	if len(resp.Trailer) > 0 {
		// A response with trailers is chunked, even a short one.
		_ = http.NewResponseController(w).Flush()
	}
	if len(resp.Trailer) == announced {
		for k, vv := range resp.Trailer {
			h[k] = append(h[k], vv...)
		}
		return
	}
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = append(h[http.TrailerPrefix+k], vv...)
	}
}

func isCanceled(err error) bool { return err == context.Canceled }

// copyBody copies resp's body to w: a stream (no Content-Length, or
// text/event-stream) flushed after every write, as ReverseProxy does,
// other bodies as drainedBody says.
func copyBody(w http.ResponseWriter, resp *http.Response) error {
	stream := resp.ContentLength == -1 || isEventStream(resp.Header.Get("Content-Type"))
	buf := copyBuffers.Get().(*[copySize]byte)
	defer copyBuffers.Put(buf)
	for {
		n, rerr := resp.Body.Read(buf[:])
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			if stream {
				if err := flush(w); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// flush sends what w holds to its client.
func flush(w http.ResponseWriter) error {
	if f, ok := w.(interface{ FlushError() error }); ok {
		return f.FlushError()
	}
	return http.NewResponseController(w).Flush()
}

// isEventStream reports whether a Content-Type is text/event-stream,
// parameters aside.
func isEventStream(ct string) bool {
	ct, _, _ = strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(ct), "text/event-stream")
}

// hopHeaders are the hop-by-hop header fields (RFC 9110 section 7.6.1,
// and the ones of RFC 2616 that ReverseProxy drops too).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// removeHopByHop removes h's hop-by-hop fields: the ones its Connection
// field names, and hopHeaders.
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, f := range hopHeaders {
		delete(h, f)
	}
}

// The attempt as the HTTP/1.1 client's request (h1Request).

func (a *attempt) reqBody(again bool) (io.Reader, int64, error) {
	if a.in.Len() == 0 {
		return nil, 0, nil
	}
	return a.in.reader(), a.in.Len(), nil
}

func (a *attempt) wrote(err error) {
	if a.in.Len() > 0 && a.in.pooledChunks() {
		if err != nil {
			a.in.noReuse.Store(true)
		}
		a.in.unref()
	}
}

// got1xx relays an interim response (103 Early Hints, say) to the client.
func (a *attempt) got1xx(code int, h http.Header) error {
	wh := a.w.Header()
	for k, vv := range h {
		wh[k] = append(wh[k], vv...)
	}
	a.w.WriteHeader(code)
	clear(wh) // WriteHeader keeps them for the final response otherwise
	return nil
}

// forwardingHeaders are the client's fields that the proxy replaces with
// its own: ReverseProxy drops them before its Rewrite, and rewrite sets
// the X-Forwarded ones; Expect was answered when the body was read.
var forwardingHeaders = map[string]bool{"Forwarded": true, "X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true, "Expect": true}

// appendHead appends the attempt's request head: the client's request
// line and header as ReverseProxy and rewrite would have them sent.
func (a *attempt) appendHead(b []byte) ([]byte, error) {
	r := a.r
	if !httpguts.ValidHostHeader(r.Host) {
		return b, fmt.Errorf("http: invalid Host header %q", r.Host)
	}
	b = append(b, r.Method...)
	b = append(b, ' ')
	switch p := r.URL.EscapedPath(); {
	case r.URL.Opaque != "":
		b = append(b, r.URL.RequestURI()...)
	case p == "":
		b = append(b, '/')
	default:
		b = append(b, p...)
	}
	if q := r.URL.RawQuery; r.URL.Opaque == "" && (q != "" || r.URL.ForceQuery) {
		b = append(b, '?')
		b = append(b, cleanQuery(q)...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, r.Host...)
	b = append(b, "\r\n"...)
	b = appendAgentAndLength(b, r.Method, r.Header.Get("User-Agent"), a.in.Len())
	conn := r.Header["Connection"]
	grpc := !a.callDeadline.IsZero()
	for k, vv := range r.Header {
		if excludedHeaders[k] || forwardingHeaders[k] || isHopHeader(k) || httpguts.HeaderValuesContainsToken(conn, k) || grpc && k == "Grpc-Timeout" {
			continue
		}
		for _, v := range vv {
			b = appendHeaderLine(b, k, v)
		}
	}
	if httpguts.HeaderValuesContainsToken(r.Header["Te"], "trailers") {
		b = append(b, "Te: trailers\r\n"...)
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		b = append(b, "X-Forwarded-For: "...)
		for _, v := range r.Header["X-Forwarded-For"] {
			b = append(b, textproto.TrimString(v)...)
			b = append(b, ", "...)
		}
		b = append(b, ip...)
		b = append(b, "\r\n"...)
	}
	b = appendHeaderLine(b, "X-Forwarded-Host", r.Host)
	if r.TLS != nil {
		b = append(b, "X-Forwarded-Proto: https\r\n"...)
	} else {
		b = append(b, "X-Forwarded-Proto: http\r\n"...)
	}
	if grpc {
		b = appendHeaderLine(b, "Grpc-Timeout", formatGRPCTimeout(time.Until(a.callDeadline)))
	}
	return append(b, "\r\n"...), nil
}

func isHopHeader(k string) bool {
	for _, h := range hopHeaders {
		if h == k {
			return true
		}
	}
	return false
}

// cleanQuery drops what cannot be parsed of a query (a ';', a bad
// escape), as ReverseProxy does, so that the replica and the proxy read
// the same parameters; a clean query is returned as it is.
func cleanQuery(q string) string {
	for i := 0; i < len(q); {
		switch q[i] {
		case ';':
			return reencodeQuery(q)
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return reencodeQuery(q)
			}
			i += 3
		default:
			i++
		}
	}
	return q
}

func reencodeQuery(q string) string {
	v, _ := url.ParseQuery(q)
	return v.Encode()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
