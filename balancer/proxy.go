package balancer

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"sync"
	"time"
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
	// watch times the reads of the response body, body; nil for an
	// attempt made outside ServeHTTP.
	watch   *watchdog
	body    watchedBody
	drained drainedBody // what ReverseProxy relays (watchdog.go)
	once    sync.Once
	log     *accessEntry // the request's, nil without an access log
	// full is set, by end, when the backend's whole response was read,
	// so that its time is a service time for the learned cap
	// (adaptive.go).
	full bool
	// area0 is the backend's in-flight area when a started (limiter.go).
	area0 float64
	// The request, its client's writer and its body, for the HTTP/1.1
	// client (relay.go).
	r  *http.Request
	w  http.ResponseWriter
	in *bufferedBody
}

// done releases the attempt's backend, once: as soon as the backend has
// sent its whole response (the backend is free while the proxy is still
// writing to a slow client), or when the attempt ends; for an upgraded
// connection, when its tunnel closes.
func (a *attempt) done() { a.end(false) }

// end is done, told whether the backend's whole response was read.
func (a *attempt) end(full bool) {
	a.once.Do(func() {
		a.full = full
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

// exchange is one client request on its way through the proxy: what the
// loop in ServeHTTP carries from one attempt to the next, and what the
// client got, for the Observer and the access log.
type exchange struct {
	w     http.ResponseWriter // the access log's writer around the server's
	r     *http.Request
	ctx   context.Context // ends when the client goes away (clientconn.go) or watch breaks off
	body  *bufferedBody
	acc   *accessEntry // nil without an access log
	start time.Time
	// deadline ends the wait for a backend, over every try: the queue
	// timeout, or a gRPC call's deadline if sooner; zero: none.
	deadline     time.Time
	callDeadline time.Time // the end of a gRPC call's deadline; zero: none
	try          int       // the attempt under way, 0 for the first
	retry        retryState
	avoid        *Backend // the backend the last try failed on
	harms        []string // how its deliveries killed or reset backends, for the 502
	id           uint64   // nonzero once a delivery of it failed (poison.go)
	// alone is set when x is not to be batched (batch.go): its body is
	// not JSON, or its batch failed or was answered not as a batch.
	alone     bool
	batchBody []byte // x's body, once read for a batch

	replica string   // the backend that answered, "" when none was chosen
	code    int      // the client's status; 0 while unanswered or broken off
	cur     *attempt // the attempt being forwarded

	watch watchdog   // times the response's reads and writes (watchdog.go)
	send  sendWriter // w's writer: the access log's, timed by watch
}

// ServeHTTP reads the request body in full (up to MaxBody), then forwards
// the request to the backend the policy picks, waiting in the queue if all
// are at their cap, and streams the response back. Reading the body first
// keeps slow uploads from holding a model server busy, as nginx's request
// buffering does, and lets a request that a backend refused or dropped be
// sent again to another: the loop makes one attempt at a time, as Caddy's
// reverse proxy does, until one is answered or the request is refused.
//
// With a router (SetRouter), the router picks the balancer that serves r.
func (b *Balancer) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if b.router != nil {
		b.router.ServeHTTP(rw, r)
		return
	}
	b.serve(rw, r)
}

// serve is ServeHTTP without a router.
func (b *Balancer) serve(rw http.ResponseWriter, r *http.Request) {
	x := &exchange{r: r, start: time.Now()}
	x.w, x.acc = b.beginAccess(rw, r, x.start)
	x.w = b.watch(x, rw)
	// countRequest runs after finish, which settles the code of a
	// response that broke off.
	defer b.countRequest(x)
	defer b.finish(x)
	if b.refuseUpgradeOverH2C(x.w, r) {
		x.code = http.StatusNotImplemented
		return
	}
	if !b.admitUpgrade(x.w, r) {
		x.code = http.StatusServiceUnavailable
		return
	}
	defer b.endUpgrade(r)
	// rw, the server's own writer: http.MaxBytesReader closes the
	// connection after a body too large only through it.
	body, berr := b.readBody(rw, r)
	if berr != nil {
		refuseBody(x, berr)
		return
	}
	defer body.done()
	// r's context, which ends when the client goes away, and which the
	// watchdog ends too when it breaks the response off.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	x.ctx, x.body = ctx, body
	x.watch.setCancel(cancel)
	if b.refuseQuarantined(x) {
		return
	}
	x.deadline, x.callDeadline = b.deadlines(r, x.start)
	for !b.proxyAttempt(x) {
		x.try++
	}
}

// proxyAttempt makes one attempt at x: it waits for a backend and forwards
// x to it. It returns true when x has been answered, by the backend or by
// the proxy's refusal, and false when x is to be tried again. A request
// whose client has gone is never forwarded: nobody waits for its answer,
// and a client that opens and cancels requests as fast as it can (rapid
// reset) would have the replicas compute them all.
func (b *Balancer) proxyAttempt(x *exchange) (done bool) {
	x.checkClient()
	waited := time.Now()
	a, err := b.acquire(x.ctx, x.r, x.deadline, x.try > 0, x.avoid)
	x.acc.tried(x.try, time.Since(waited), a)
	if err != nil {
		b.refuseAcquire(x, err)
		return true
	}
	if x.ctx.Err() != nil { // gone while it was given the backend
		b.release(a, 0)
		x.checkClient()
	}
	if x.try > 0 {
		b.retried.Add(1)
	}
	x.replica, x.cur = a.be.Name, a
	a.callDeadline, a.watch = x.callDeadline, &x.watch
	if c := b.cfg().Batch; c.Path == "" {
		b.forward(x.ctx, x.w, x.r, x.body, a)
	} else if body, ok := b.batched(x, c); !ok {
		b.forward(x.ctx, x.w, x.r, x.body, a)
	} else if !b.forwardBatched(x, a, body, c) {
		return false // to go again alone (batch.go)
	} else if a.err != nil { // its batch was x alone: x's own failure
		x.alone, x.batchBody = true, nil
	}
	if a.err == nil {
		x.code = a.code
		x.flushAnswered()
		return true
	}
	return b.attemptFailed(x, a)
}

// attemptFailed handles attempt a of x, which got no response: it decides
// how the backend failed and whether x tries again (retry.go), and answers
// x when it does not. It returns true when x has been answered.
func (b *Balancer) attemptFailed(x *exchange, a *attempt) (done bool) {
	be, at := a.be, time.Now()
	x.checkClient()
	be.errors.Add(1)
	if !a.responded && classify(a.err) == dropped {
		b.recordHarm(be, x, at)
	}
	f := b.judge(x, be, a.err, a.responded)
	bl := b.blame(x, a, f, at)
	if bl != innocent {
		x.harms = append(x.harms, harmText(f, be))
	}
	x.retry = x.retry.after(f, bl)
	x.checkClient()
	retry := tryAgain(f, a.responded, x.retry, b.cfg().Retries, x.deadline, time.Now())
	b.cfg().Logger.Log(f.logLevel(), "replica did not answer", "replica", be.Name, "method", x.r.Method, "path", x.r.URL.Path,
		"error", a.err, "failure", f, "retrying", retry)
	if !retry {
		b.refuseUnanswered(x, f, a)
		return true
	}
	b.outcomes.retriedAfter(f)
	// Not be again if another has room: a busy one, or a dead one kept in
	// rotation by the panic threshold.
	x.avoid = be
	return false
}

// judge is how be failed an attempt of x's with err (failureOf, asking
// be's liveness under x's context), taking be out of rotation when that
// says it is dead and it had sent no response.
func (b *Balancer) judge(x *exchange, be *Backend, err error, responded bool) failure {
	f := failureOf(err, responded,
		func() bool { return b.alive(x.ctx, be) },
		func() bool { return b.speaksOnlyH2C(x.ctx, be) })
	x.checkClient()
	if f.dead() && !responded {
		b.markFailed(be)
	}
	return f
}

// deadlines returns when a wait for a backend for r ends, over every try
// (the queue timeout from now, or r's gRPC deadline if sooner; zero:
// never), and r's gRPC deadline counted from start (zero: none).
func (b *Balancer) deadlines(r *http.Request, start time.Time) (wait, call time.Time) {
	if qt := b.cfg().queueTimeout(); qt > 0 {
		wait = time.Now().Add(qt)
	}
	// A gRPC call waits no longer than its own deadline.
	call = grpcDeadline(r, start)
	if !call.IsZero() && (wait.IsZero() || call.Before(wait)) {
		wait = call
	}
	return wait, call
}

// checkClient ends x with no answer when its client has gone away:
// nobody is listening.
func (x *exchange) checkClient() {
	if x.ctx.Err() != nil {
		x.code = StatusClientGone
		abort()
	}
}

// finish ends x's watch, and tells the summary, the Observer and the
// access log how x ended.
func (b *Balancer) finish(x *exchange) {
	cause := b.endWatch(x)
	if x.code == 0 { // the response broke off mid-way: forward panicked
		x.code = brokenOffCode(x.r, x.cur, cause)
		b.brokeOff(cause)
	}
	if b.cfg().Observer != nil {
		b.cfg().Observer.Observe(x.replica, x.code, time.Since(x.start))
	}
	x.acc.finish(x.replica, x.code)
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
// off mid-way, a, its attempt, having been forwarded, cause being why the
// proxy broke it off, if it did: 504 when the replica sent nothing for the
// upstream timeout, 408 when the client took nothing for the send timeout
// (nginx's code for its client timeouts), 499 when the client went away
// (a failed write cancels its request's context), otherwise the status
// the replica sent, which the client got before the replica broke off.
func brokenOffCode(r *http.Request, a *attempt, cause breakCause) int {
	switch {
	case cause == upstreamTimeout:
		return http.StatusGatewayTimeout
	case cause == sendTimeout:
		return http.StatusRequestTimeout
	case r.Context().Err() != nil || a == nil || a.code == 0:
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
	if c := b.transport.h1(); c != nil && !isUpgrade(r) {
		b.relay(ctx, w, r, body, a, c)
		return
	}
	ctx = context.WithValue(ctx, attemptKey{}, a)
	if body.Len() > 0 && body.pooledChunks() {
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

func rewrite(pr *httputil.ProxyRequest) {
	a := pr.In.Context().Value(attemptKey{}).(*attempt)
	if pr.Out.Body != nil {
		// ReverseProxy wraps the body so that the transport's Close does
		// not close the client's request body; this one is the proxy's
		// own copy (body.go), and the transport must see it as it is to
		// write it in one go.
		pr.Out.Body = pr.In.Body
	}
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
	return resp.Request.Context().Value(attemptKey{}).(*attempt).modifyResponse(resp)
}

// modifyResponse takes note of the backend's response to a, and wraps its
// body to time its reads, read it ahead of a slow client (spool.go) or
// release the backend at its end.
func (a *attempt) modifyResponse(resp *http.Response) error {
	a.code = resp.StatusCode
	a.responded = true
	if resp.ProtoMajor == 1 && !a.be.spokeHTTP1.Load() {
		a.be.spokeHTTP1.Store(true)
	}
	if resp.StatusCode >= 500 {
		a.be.errors.Add(1)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// A 101's body is the upgraded connection, which ReverseProxy
		// needs as it is; the tunnel gives back the backend's slot now,
		// and forward's deferred done counts it closed.
		a.upgrade()
		a.log.finish(a.be.Name, resp.StatusCode)
		return nil
	}
	if a.watch != nil && resp.Body != nil && resp.Body != http.NoBody {
		a.body = watchedBody{ReadCloser: resp.Body, d: a.watch}
		resp.Body = &a.body
	}
	if !a.b.spool(resp, a) {
		resp.Body = &releasingBody{ReadCloser: resp.Body, a: a}
	}
	if a.watch != nil && resp.ContentLength > 0 {
		a.drained = drainedBody{ReadCloser: resp.Body, d: a.watch}
		resp.Body = &a.drained
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
		r.a.end(true)
	}
	return n, err
}

// proxyError records that the backend sent no response; ServeHTTP decides
// whether to try another backend or answer the client.
func proxyError(_ http.ResponseWriter, r *http.Request, err error) {
	r.Context().Value(attemptKey{}).(*attempt).err = err
}
