package balancer

import (
	"cmp"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Every answer the proxy gives of its own, rather than a replica's, is
// written here: 503 when it has no room (queue full or timed out, no ready
// replica, body buffers full), 502 and 504 when no replica answered, and
// 413, 408 and 400 for a body it could not read, 503 past the limit on
// upgraded connections. A client gets a JSON body {"error": "..."}; a gRPC
// client gets the same as a gRPC status, which it can read. A 503 the
// client may retry carries Retry-After. (An upgrade request that cannot be
// passed over h2c gets 501 from refuseUpgradeOverH2C, upstream.go.)

// refuseAcquire answers x, which found no backend (acquire's err): 503,
// unless its client has gone away.
func (b *Balancer) refuseAcquire(x *exchange, err error) {
	x.checkClient()
	b.refuseUnavailable(x, reasonOf(err), grpcCodeOf(err), err.Error())
}

// refuseUnavailable answers x 503 for why, saying msg, with Retry-After;
// a gRPC client gets code.
func (b *Balancer) refuseUnavailable(x *exchange, why reason, code grpcCode, msg string) {
	x.code = http.StatusServiceUnavailable
	b.reject(why)
	b.retryLater(x.w)
	refuse(x.w, x.r, x.code, code, msg)
}

// refuseUnanswered answers x, whose attempt a failed with f and is not
// tried again: 503 (queue timeout) when the last backend was busy and
// retries are on, as the request waited for room as in the queue; 502
// naming the cause when its deliveries broke backends twice (poison.go) or
// the backend speaks only h2c; 504 when it was slow; 502 otherwise.
func (b *Balancer) refuseUnanswered(x *exchange, f failure, a *attempt) {
	be := a.be
	switch {
	case f == busy && b.cfg().Retries > 0:
		b.refuseUnavailable(x, reasonQueueTimeout, grpcDeadlineExceeded,
			errQueueTimeout.Error()+": the last, "+be.Name+", did not answer: "+a.err.Error())
		return
	case f == wrongProtocol:
		b.failed.Add(1)
		b.failedWith(http.StatusBadGateway)
		x.code = http.StatusBadGateway
		refuse(x.w, x.r, x.code, grpcUnavailable, wrongProtocolText(be))
		return
	case !a.responded && x.retry.poisoned():
		b.refusePoison(x)
		return
	}
	b.failed.Add(1)
	x.code = http.StatusBadGateway
	if f == slow {
		x.code = http.StatusGatewayTimeout
	}
	b.failedWith(x.code)
	msg := be.Name + " did not answer: " + a.err.Error()
	if f == reset {
		msg = "reset by replica: " + be.Name + " closed the connection before answering: " + a.err.Error()
	}
	refuse(x.w, x.r, x.code, grpcCodeFor(x.code), msg)
}

// refuseBody answers x, whose body could not be read (berr), or ends it
// with no answer when its client went away or broke off the upload.
func refuseBody(x *exchange, berr *bodyError) {
	x.code = cmp.Or(berr.status, StatusClientGone)
	if berr.status == 0 {
		abort()
	}
	// What is left of the body is not wanted. Before closing the
	// connection the server reads on, to discard up to 256 KiB of it:
	// for a second at most, not until the client sends it.
	_ = http.NewResponseController(x.w).SetReadDeadline(time.Now().Add(time.Second))
	refuse(x.w, x.r, berr.status, cmp.Or(berr.grpc, grpcCodeFor(berr.status)), berr.msg)
}

// refuseUpgrade answers 503 to an upgrade request past
// Options.MaxUpgraded.
func (b *Balancer) refuseUpgrade(w http.ResponseWriter) {
	b.rejected.Add(1)
	b.retryLater(w)
	writeError(w, http.StatusServiceUnavailable, errTooManyUpgrades)
}

// retryLater sets Retry-After on a 503 about to be written to w: when the
// proxy expects to have room, from its predicted wait.
func (b *Balancer) retryLater(w http.ResponseWriter) {
	w.Header().Set("Retry-After", strconv.Itoa(b.retryAfter()))
}

// refuse answers r with the proxy's own error: status and a JSON body
// saying msg, or, to a gRPC client, the gRPC status code with msg.
func refuse(w http.ResponseWriter, r *http.Request, status int, code grpcCode, msg string) {
	if !isGRPC(r) {
		writeError(w, status, msg)
		return
	}
	writeGRPCStatus(w, r, code, msg)
}

// writeError writes status with a JSON body {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
	flushAnswer(w)
}

// flushAnswer sends what the proxy answered now, while its writes are
// timed (watchdog.go), rather than after the handler, when they are not.
func flushAnswer(w http.ResponseWriter) { _ = http.NewResponseController(w).Flush() }

// grpcCodeOf is the status a gRPC client gets for acquire's error err: a
// call that could not be queued is RESOURCE_EXHAUSTED (the service is
// overloaded), one whose wait ran out DEADLINE_EXCEEDED, one with no
// replica to go to UNAVAILABLE.
func grpcCodeOf(err error) grpcCode {
	switch {
	case errors.Is(err, errQueueFull), errors.Is(err, errPredictedWait):
		return grpcResourceExhausted
	case errors.Is(err, errQueueTimeout):
		return grpcDeadlineExceeded
	default:
		return grpcUnavailable
	}
}

// grpcCodeFor is the status a gRPC client gets for one of the proxy's own
// HTTP error answers, status.
func grpcCodeFor(status int) grpcCode {
	switch status {
	case http.StatusRequestEntityTooLarge:
		return grpcResourceExhausted
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return grpcDeadlineExceeded
	case http.StatusBadRequest:
		return grpcInternal
	default: // 502, 503
		return grpcUnavailable
	}
}

// writeGRPCStatus answers a gRPC call with a trailers-only response: HTTP
// 200 and the status in the headers, with no message, as a gRPC server
// answers a call it refuses. A Retry-After already set becomes
// grpc-retry-pushback-ms, which a client with a retry policy waits for.
func writeGRPCStatus(w http.ResponseWriter, r *http.Request, code grpcCode, msg string) {
	h := w.Header()
	if ra := h.Get("Retry-After"); ra != "" {
		if s, err := strconv.Atoi(ra); err == nil {
			h.Set("Grpc-Retry-Pushback-Ms", strconv.Itoa(s*1000))
		}
		h.Del("Retry-After")
	}
	if r.ProtoMajor >= 2 {
		// An HTTP/2 stream ends on its own; Connection: close would end
		// every other call on the connection.
		h.Del("Connection")
	}
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(int(code)))
	h.Set("Grpc-Message", encodeGRPCMessage(msg))
	// Not flushed: a trailers-only answer is one HEADERS frame that ends
	// the stream, which the server writes once the handler has returned.
	w.WriteHeader(http.StatusOK)
}

// encodeGRPCMessage percent-encodes msg for the grpc-message header: every
// byte outside printable ASCII, and '%'.
func encodeGRPCMessage(msg string) string {
	var sb strings.Builder
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c >= ' ' && c <= '~' && c != '%' {
			sb.WriteByte(c)
			continue
		}
		sb.WriteString("%" + strings.ToUpper(strconv.FormatUint(uint64(c)>>4, 16)+strconv.FormatUint(uint64(c)&15, 16)))
	}
	return sb.String()
}
