package balancer

import (
	"bufio"
	"context"
	"encoding/base64"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// HTTP/2 over cleartext comes two ways (RFC 7540 section 3). With prior
// knowledge the client opens with the HTTP/2 preface, and net/http serves
// that itself (Server.Protocols). By Upgrade, which curl --http2 sends on
// http:// URLs, the first request is HTTP/1.1 with "Upgrade: h2c" and an
// HTTP2-Settings header; the server answers 101 and then the request's
// response, on stream 1 of the HTTP/2 connection that follows. net/http
// does not offer that, and x/net/http2's ServeConn does: its UpgradeRequest
// is exactly that stream 1. Its h2c package is not used: it reads a body
// of any size into memory, and answers 500 to an upgrade it cannot make.
//
// The upgrade is taken only for a request without a body. RFC 7540 has the
// whole body sent before the switch, so a large upload would have to be
// held in memory; a server may ignore an Upgrade header (RFC 9110 section
// 7.8), so a request with a body, over TLS, in HTTP/1.0 or with a
// malformed HTTP2-Settings header is served as HTTP/1.1, with the h2c
// upgrade taken out of its headers so it does not reach a replica.
//
// An upgraded connection is the same accepted connection, hijacked: it
// still holds its MaxConns slot and stays counted in Stats.Conns until it
// closes.

// h2cUpgrades serves the connections switched to HTTP/2 by Upgrade, which
// http.Server no longer tracks once hijacked, and ends them on Shutdown.
type h2cUpgrades struct {
	h2   *http2.Server
	base *http.Server // h2's configuration; its Shutdown sends GOAWAY on every upgraded connection

	mu      sync.Mutex            // guards the fields below
	closing bool                  // Shutdown began: no more upgrades
	conns   map[net.Conn]struct{} // upgraded connections being served
	wg      sync.WaitGroup        // one per entry of conns
}

func newH2CUpgrades(front *http.Server) *h2cUpgrades {
	u := &h2cUpgrades{
		h2: &http2.Server{WriteByteTimeout: front.HTTP2.WriteByteTimeout},
		base: &http.Server{
			IdleTimeout: front.IdleTimeout,
			ErrorLog:    front.ErrorLog,
		},
		conns: make(map[net.Conn]struct{}),
	}
	// Only to register h2's graceful shutdown on base: base never serves.
	_ = http2.ConfigureServer(u.base, u.h2)
	return u
}

// h2cHandler is the proxy port's handler: it takes h2c upgrades and hands
// every other request to the balancer.
type h2cHandler struct{ b *Balancer }

func (h h2cHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && isH2CUpgrade(r.Header) {
		if settings, ok := h2cSettings(r); ok && h.b.h2c.serve(w, r, settings, h.b) {
			return
		}
		declineH2C(r.Header)
	}
	h.b.ServeHTTP(w, r)
}

// isH2CUpgrade reports whether h asks for an upgrade to h2c: "h2c" among
// the Upgrade tokens and HTTP2-Settings among the Connection tokens.
func isH2CUpgrade(h http.Header) bool {
	return hasToken(h["Upgrade"], "h2c") && hasToken(h["Connection"], "http2-settings")
}

// h2cSettings returns the decoded HTTP2-Settings of r, an h2c upgrade
// request, and whether the upgrade may be made: r is HTTP/1.1 over
// cleartext, has no body, and exactly one well-formed HTTP2-Settings.
func h2cSettings(r *http.Request) ([]byte, bool) {
	if r.TLS != nil || r.ProtoMinor < 1 || r.ContentLength != 0 {
		return nil, false
	}
	vals := r.Header["Http2-Settings"]
	if len(vals) != 1 {
		return nil, false
	}
	settings, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(vals[0], "="))
	if err != nil || len(settings)%6 != 0 {
		return nil, false
	}
	return settings, true
}

// serve switches r's connection to HTTP/2, answers r on its stream 1 with
// h, and serves the connection's further streams until it closes. It
// returns false, having written nothing, if the switch cannot be made.
func (u *h2cUpgrades) serve(w http.ResponseWriter, r *http.Request, settings []byte, h http.Handler) bool {
	u.mu.Lock()
	if u.closing {
		u.mu.Unlock()
		return false
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		u.mu.Unlock()
		return false
	}
	u.conns[conn] = struct{}{}
	u.wg.Add(1)
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		delete(u.conns, conn)
		u.mu.Unlock()
		conn.Close()
		u.wg.Done()
	}()
	_ = conn.SetDeadline(time.Time{})
	if _, err := rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"); err != nil {
		return true
	}
	if err := rw.Flush(); err != nil {
		return true
	}
	// The request's context ends when this handler returns; the
	// connection's requests keep its values (the server, the tracked
	// connection), not its end.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	first := r.Clone(ctx)
	first.Proto, first.ProtoMajor, first.ProtoMinor = "HTTP/2.0", 2, 0
	first.Body = http.NoBody
	for _, k := range []string{"Connection", "Upgrade", "Http2-Settings", "Keep-Alive", "Proxy-Connection"} {
		first.Header.Del(k)
	}
	u.h2.ServeConn(bufferedConn(conn, rw.Reader), &http2.ServeConnOpts{
		Context:        ctx,
		BaseConfig:     u.base,
		Handler:        h,
		UpgradeRequest: first,
		Settings:       settings,
	})
	return true
}

// beginShutdown refuses further upgrades and sends GOAWAY on every
// upgraded connection: each closes once its streams are done.
func (u *h2cUpgrades) beginShutdown() {
	u.mu.Lock()
	u.closing = true
	u.mu.Unlock()
	// base serves no listener: Shutdown runs the GOAWAY hook and returns.
	_ = u.base.Shutdown(context.Background())
}

// wait waits until every upgraded connection has closed, or ctx ends;
// then it closes those left.
func (u *h2cUpgrades) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { u.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		u.closeAll()
		return ctx.Err()
	}
}

// closeAll closes every upgraded connection at once.
func (u *h2cUpgrades) closeAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for c := range u.conns {
		c.Close()
	}
}

// declineH2C takes an h2c upgrade the proxy does not make out of h, so
// that the request is served as HTTP/1.1 and no replica sees the upgrade.
func declineH2C(h http.Header) {
	h.Del("Http2-Settings")
	removeToken(h, "Upgrade", "h2c")
	removeToken(h, "Connection", "http2-settings")
	if len(h["Upgrade"]) == 0 {
		removeToken(h, "Connection", "upgrade")
	}
}

// hasToken reports whether the comma-separated lists vals hold tok, in any
// case.
func hasToken(vals []string, tok string) bool {
	for _, v := range vals {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), tok) {
				return true
			}
		}
	}
	return false
}

// removeToken removes tok, in any case, from the comma-separated lists of
// h's key, and the key if nothing is left.
func removeToken(h http.Header, key, tok string) {
	var kept []string
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t != "" && !strings.EqualFold(t, tok) {
				kept = append(kept, t)
			}
		}
	}
	if len(kept) == 0 {
		h.Del(key)
		return
	}
	h.Set(key, strings.Join(kept, ", "))
}

// bufferedConn is c, reading first what br has already read from it.
func bufferedConn(c net.Conn, br *bufio.Reader) net.Conn {
	if br.Buffered() == 0 {
		return c
	}
	return &readAheadConn{Conn: c, br: br}
}

type readAheadConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *readAheadConn) Read(p []byte) (int, error) {
	if c.br.Buffered() > 0 {
		return c.br.Read(p)
	}
	return c.Conn.Read(p)
}
