package balancer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strconv"
	"time"
)

type backendKey struct{}

// ServeHTTP reads the request body in full (up to MaxBody), then forwards
// the request to the backend the policy picks and streams its response back.
// Reading the body first keeps slow uploads from holding a model server
// busy, as nginx's request buffering does.
func (b *Balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, status, err := b.readBody(w, r)
	if err != nil {
		if status != 0 {
			writeError(w, status, err.Error())
		}
		return
	}
	be := b.acquire(r)
	if be == nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "no ready replica: all replicas are starting, restarting or stopped")
		return
	}
	defer b.release(be)

	out := r.WithContext(context.WithValue(r.Context(), backendKey{}, be))
	out.ContentLength = int64(len(body))
	out.TransferEncoding = nil
	if len(body) == 0 {
		out.Body = http.NoBody
	} else {
		out.Body = io.NopCloser(bytes.NewReader(body))
		// GetBody lets the transport resend the request on a fresh
		// connection when a reused one turns out to be closed.
		out.GetBody = func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(body)), nil
		}
	}
	b.proxy.ServeHTTP(w, out)
}

// readBody reads r's body whole. On failure it returns the status to answer
// with, or 0 when the client is gone and nothing should be written.
func (b *Balancer) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	limit := b.opts.MaxBody
	if r.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body of %d bytes is over the limit of %d bytes", r.ContentLength, limit)
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 && len(r.TransferEncoding) == 0 {
		return nil, 0, nil
	}
	rc := http.NewResponseController(w)
	src := &idleTimeoutReader{r: http.MaxBytesReader(w, r.Body, limit), rc: rc, timeout: b.opts.ClientTimeout}
	// The deadline must not outlive the read: the server's background read
	// during the upstream call would hit it and cancel the request.
	defer rc.SetReadDeadline(time.Time{})

	// Grow with what arrives rather than trust a declared length up front:
	// a client declaring 50 MiB and sending nothing costs little.
	var buf bytes.Buffer
	buf.Grow(int(min(max(r.ContentLength, 0), 1<<20)) + bytes.MinRead)
	_, err := buf.ReadFrom(src)
	body := buf.Bytes()
	var tooLarge *http.MaxBytesError
	switch {
	case err == nil:
		return body, 0, nil
	case errors.As(err, &tooLarge):
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body is over the limit of %d bytes", limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Otherwise the server, before answering, reads the rest of the
		// body to reuse the connection, with no deadline left: forever.
		w.Header().Set("Connection", "close")
		return nil, http.StatusRequestTimeout, fmt.Errorf("client sent no body data for %s", b.opts.ClientTimeout)
	default:
		return nil, 0, err
	}
}

// idleTimeoutReader bounds each pause in the client's upload rather than the
// whole upload, so that a large body on a slow link still gets through.
type idleTimeoutReader struct {
	r        io.Reader
	rc       *http.ResponseController
	timeout  time.Duration
	extended time.Time
}

func (t *idleTimeoutReader) Read(p []byte) (int, error) {
	// Moving the deadline costs a timer update; once a second is enough,
	// or every quarter of a shorter timeout, so that a pause of at least
	// three quarters of the timeout is always allowed.
	if now := time.Now(); now.Sub(t.extended) > min(time.Second, t.timeout/4) {
		_ = t.rc.SetReadDeadline(now.Add(t.timeout))
		t.extended = now
	}
	return t.r.Read(p)
}

func rewrite(pr *httputil.ProxyRequest) {
	be := pr.In.Context().Value(backendKey{}).(*Backend)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = be.Addr
	// Append to, rather than replace, what earlier proxies recorded.
	pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
	pr.SetXForwarded()
}

func countServerErrors(resp *http.Response) error {
	if resp.StatusCode >= 500 {
		resp.Request.Context().Value(backendKey{}).(*Backend).errors.Add(1)
	}
	return nil
}

// proxyError answers a request the backend did not answer.
func (b *Balancer) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	be := r.Context().Value(backendKey{}).(*Backend)
	if r.Context().Err() != nil {
		return // the client went away; nobody is listening
	}
	be.errors.Add(1)
	status := http.StatusBadGateway
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		status = http.StatusGatewayTimeout
	}
	b.opts.Logger.Warn("replica did not answer", "replica", be.Name, "method", r.Method, "path", r.URL.Path, "error", err)
	writeError(w, status, be.Name+" did not answer: "+err.Error())
}

func writeError(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
