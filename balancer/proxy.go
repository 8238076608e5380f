package balancer

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

type attemptKey struct{}

// attempt is one try of a request on one backend, from the moment acquire
// counts it in flight there until done.
type attempt struct {
	b     *Balancer
	be    *Backend
	start time.Time
	// prev and next link the backend's attempts in flight, oldest first;
	// guarded by the balancer's mu (inflight.go).
	prev, next *attempt
	code       int   // the backend's status code
	err        error // set by the proxy when the attempt failed before writing to the client
	// responded is set once the backend's response headers arrived: a
	// later failure (an upgrade that could not be completed) is no sign
	// that the backend is down, and the request is not retried.
	responded bool
	// upgraded is set at a 101: the backend's slot was given back and
	// the connection is counted in its upgraded tunnels (upgrade.go).
	upgraded bool
	// callDeadline is the end of a gRPC call's deadline (grpc-timeout);
	// zero when it has none.
	callDeadline time.Time
	once         sync.Once
	log          *accessEntry // the request's, nil without an access log
}

// done releases the attempt's backend, once: as soon as the backend has
// sent its whole response (the backend is free while the proxy is still
// writing to a slow client), or when the attempt ends; for an upgraded
// connection, when its tunnel closes.
func (a *attempt) done() {
	a.once.Do(func() {
		if a.upgraded {
			a.b.endTunnel(a.be)
			return
		}
		var d time.Duration
		if a.err == nil {
			d = time.Since(a.start)
		}
		a.be.requests.Add(1)
		a.b.release(a, d)
	})
}

// ServeHTTP reads the request body in full (up to MaxBody), then forwards
// the request to the backend the policy picks, waiting in the queue if all
// are at their cap, and streams the response back. Reading the body first
// keeps slow uploads from holding a model server busy, as nginx's request
// buffering does, and lets a request that a backend refused or dropped be
// sent again to another.
func (b *Balancer) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	replica, code := "", 0
	var cur *attempt                      // the attempt being forwarded
	w, acc := b.beginAccess(rw, r, start) // acc is nil without an access log
	if b.opts.Observer != nil || acc != nil {
		defer func() {
			if code == 0 { // the response broke off mid-way: forward panicked
				code = brokenOffCode(r, cur)
			}
			if b.opts.Observer != nil {
				b.opts.Observer.Observe(replica, code, time.Since(start))
			}
			acc.finish(replica, code)
		}()
	}
	if b.refuseUpgradeOverH2C(w, r) {
		code = http.StatusNotImplemented
		return
	}
	if !b.admitUpgrade(w, r) {
		code = http.StatusServiceUnavailable
		return
	}
	defer b.endUpgrade(r)
	// rw, the server's own writer: http.MaxBytesReader closes the
	// connection after a body too large only through it.
	body, berr := b.readBody(rw, r)
	if berr != nil {
		code = cmp.Or(berr.status, StatusClientGone)
		if berr.status == 0 {
			abort()
		}
		// What is left of the body is not wanted. Before closing the
		// connection the server reads on, to discard up to 256 KiB of it:
		// for a second at most, not until the client sends it.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(time.Second))
		refuse(w, r, berr.status, cmp.Or(berr.grpc, grpcCodeFor(berr.status)), berr.msg)
		return
	}
	defer body.done()
	ctx, cancel := requestContext(r)
	defer cancel()
	var deadline time.Time // the end of the queue timeout, over every try
	if qt := b.opts.queueTimeout(); qt > 0 {
		deadline = time.Now().Add(qt)
	}
	// A gRPC call waits no longer than its own deadline.
	callDeadline := grpcDeadline(r, start)
	if !callDeadline.IsZero() && (deadline.IsZero() || callDeadline.Before(deadline)) {
		deadline = callDeadline
	}
	died := false      // a backend died during this request once already
	retries := 0       // tries after the first that count against Options.Retries
	var avoid *Backend // the backend the last try failed on
	for try := 0; ; try++ {
		waited := time.Now()
		a, err := b.acquire(ctx, r, deadline, try > 0, avoid)
		acc.tried(try, time.Since(waited), a)
		if err != nil {
			code = StatusClientGone
			if ctx.Err() != nil {
				abort()
			}
			code = http.StatusServiceUnavailable
			b.reject(reasonOf(err))
			w.Header().Set("Retry-After", strconv.Itoa(b.retryAfter()))
			refuse(w, r, code, grpcCodeOf(err), err.Error())
			return
		}
		if try > 0 {
			b.retried.Add(1)
		}
		be := a.be
		replica, cur = be.Name, a
		a.callDeadline = callDeadline
		b.forward(ctx, w, r, body, a)
		if a.err == nil {
			code = a.code
			return
		}
		if ctx.Err() != nil {
			code = StatusClientGone
			abort() // the client went away; nobody is listening
		}
		be.errors.Add(1)
		kind := classify(a.err)
		if !a.responded && (kind == refused || kind == dropped) && b.alive(ctx, be) {
			kind = busy
		}
		if ctx.Err() != nil {
			code = StatusClientGone
			abort()
		}
		if (kind == refused || kind == dropped) && !a.responded {
			b.markFailed(be)
		}
		var retry bool
		switch {
		case a.responded || kind == slow || b.opts.Retries == 0:
		case kind == busy:
			// Busy is not dead: the request waits for room as in the
			// queue, within its queue timeout, and not on be if another
			// backend has room.
			retry = deadline.IsZero() || time.Now().Before(deadline)
		default:
			retry = retries < b.opts.Retries && !(kind == dropped && died)
		}
		b.opts.Logger.Log(kind.logLevel(), "replica did not answer", "replica", be.Name, "method", r.Method, "path", r.URL.Path,
			"error", a.err, "busy", kind == busy, "retrying", retry)
		if !retry {
			if kind == busy && b.opts.Retries > 0 {
				code = http.StatusServiceUnavailable
				b.reject(reasonQueueTimeout)
				w.Header().Set("Retry-After", strconv.Itoa(b.retryAfter()))
				refuse(w, r, code, grpcDeadlineExceeded, errQueueTimeout.Error()+": the last, "+be.Name+", did not answer: "+a.err.Error())
				return
			}
			b.failed.Add(1)
			code = http.StatusBadGateway
			if kind == slow {
				code = http.StatusGatewayTimeout
			}
			b.failedWith(code)
			refuse(w, r, code, grpcCodeFor(code), be.Name+" did not answer: "+a.err.Error())
			return
		}
		// Not be again if another has room: a busy one, or a dead one
		// kept in rotation by the panic threshold.
		avoid = be
		if kind != busy {
			retries++
		}
		died = died || kind == dropped
	}
}

// abort ends a request whose client is gone, or broke off its request,
// with no answer: the server closes the connection. Returning from the
// handler instead would send an empty 200 that no replica sent.
func abort() { panic(http.ErrAbortHandler) }

// StatusClientGone is the code an Observer sees for a request whose client
// went away before it was answered, or while the answer was being written
// (nginx logs these as 499).
const StatusClientGone = 499

// brokenOffCode is the code to record for a request whose response broke
// off mid-way, a, its attempt, having been forwarded: 499 when the client
// went away (a failed write cancels its request's context), otherwise the
// status the replica sent, which the client got before the replica broke
// off.
func brokenOffCode(r *http.Request, a *attempt) int {
	if r.Context().Err() != nil || a == nil || a.code == 0 {
		return StatusClientGone
	}
	return a.code
}

// Observer is told of every request the proxy finished: the replica that
// answered it (empty when none was chosen), the status code the client got
// and how long it took.
type Observer interface {
	Observe(replica string, code int, d time.Duration)
}

// forward sends attempt a of r, under ctx, to its backend and releases the
// backend afterwards. a.err is set when the backend sent no response, so
// nothing has been written to w and the request may be tried again.
func (b *Balancer) forward(ctx context.Context, w http.ResponseWriter, r *http.Request, body *bufferedBody, a *attempt) {
	defer a.done()
	if !a.callDeadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, a.callDeadline)
		defer cancel()
	}
	ctx = context.WithValue(ctx, attemptKey{}, a)
	if body.Len() > 0 {
		ctx = httptrace.WithClientTrace(ctx, body.trace())
	}
	out := r.WithContext(ctx)
	out.ContentLength = body.Len()
	out.TransferEncoding = nil
	if body.Len() == 0 {
		out.Body = http.NoBody
	} else {
		out.Body = body.reader()
		// GetBody lets the transport resend the request on a fresh
		// connection when a reused one turns out to be closed.
		out.GetBody = func() (io.ReadCloser, error) { return body.reader(), nil }
	}
	b.proxy.ServeHTTP(w, out)
}

// How a backend failed to answer.
type failure int

const (
	refused failure = iota // no connection: the request never reached it
	dropped                // connection reset or closed before any response
	slow                   // no response within the upstream timeout
	// busy: no connection within the connect timeout (its accept backlog
	// is full), or refused or reset by a backend whose process is alive
	// and passing its liveness checks.
	busy
)

// logLevel is the level "replica did not answer" is logged at: a busy
// replica is ordinary under load, and the summary counts what it costs.
func (f failure) logLevel() hclog.Level {
	if f == busy {
		return hclog.Debug
	}
	return hclog.Warn
}

func classify(err error) failure {
	var op *net.OpError
	var ne net.Error
	switch {
	case errors.As(err, &op) && op.Op == "dial" && op.Timeout():
		return busy
	case errors.As(err, &op) && op.Op == "dial":
		return refused
	case errors.As(err, &ne) && ne.Timeout():
		return slow
	default:
		return dropped
	}
}

func rewrite(pr *httputil.ProxyRequest) {
	a := pr.In.Context().Value(attemptKey{}).(*attempt)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = a.be.Addr
	// The client's 100-continue was answered when its body was read.
	pr.Out.Header.Del("Expect")
	// Append to, rather than replace, what earlier proxies recorded.
	pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
	pr.SetXForwarded()
	if !a.callDeadline.IsZero() {
		// What is left of the call's deadline after its wait here.
		pr.Out.Header.Set("Grpc-Timeout", formatGRPCTimeout(time.Until(a.callDeadline)))
	}
}

func modifyResponse(resp *http.Response) error {
	a := resp.Request.Context().Value(attemptKey{}).(*attempt)
	a.code = resp.StatusCode
	a.responded = true
	if resp.StatusCode >= 500 {
		a.be.errors.Add(1)
	}
	switch {
	case resp.StatusCode == http.StatusSwitchingProtocols:
		// A 101's body is the upgraded connection, which ReverseProxy
		// needs as it is; the tunnel gives back the backend's slot now,
		// and forward's deferred done counts it closed.
		a.upgrade()
		a.log.finish(a.be.Name, resp.StatusCode)
	case a.b.readAhead(resp, a):
	default:
		resp.Body = &releasingBody{ReadCloser: resp.Body, a: a}
	}
	return nil
}

// releasingBody releases its attempt's backend when the backend's response
// body has been read to its end.
type releasingBody struct {
	io.ReadCloser
	a *attempt
}

func (r *releasingBody) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if err == io.EOF {
		r.a.done()
	}
	return n, err
}

// proxyError records that the backend sent no response; ServeHTTP decides
// whether to try another backend or answer the client.
func proxyError(_ http.ResponseWriter, r *http.Request, err error) {
	r.Context().Value(attemptKey{}).(*attempt).err = err
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
