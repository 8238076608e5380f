package balancer

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// gRPC rides on HTTP/2 and passes through the proxy as any request does:
// its one request message is read whole before a backend is chosen (so a
// call is retried as a request is), its response streams back, and the
// response's trailers (grpc-status, grpc-message) follow it. A call counts
// against MaxInflight, and least_conn, as one request, whatever connection
// it came on. Two things are gRPC's own: a call's grpc-timeout bounds its
// wait in the queue and its time upstream, and the proxy's own refusals are
// answered as gRPC statuses, which a gRPC client can read, rather than as
// an HTTP 503 with a JSON body, which it cannot.

// grpcCode is a gRPC status code (google.golang.org/grpc/codes).
type grpcCode int

const (
	grpcDeadlineExceeded  grpcCode = 4
	grpcResourceExhausted grpcCode = 8
	grpcInternal          grpcCode = 13
	grpcUnavailable       grpcCode = 14
)

// isGRPC reports whether r is a gRPC call (gRPC-Web included): its
// Content-Type starts with application/grpc.
func isGRPC(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}

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

// refuse answers r with the proxy's own error: status and a JSON body
// saying msg, or, to a gRPC client, the gRPC status code with msg.
func refuse(w http.ResponseWriter, r *http.Request, status int, code grpcCode, msg string) {
	if !isGRPC(r) {
		writeError(w, status, msg)
		return
	}
	writeGRPCStatus(w, r, code, msg)
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

// grpcDeadline returns the end of gRPC call r's deadline, from its
// grpc-timeout header, counted from start; zero when r is not a gRPC call
// or has no valid grpc-timeout (a replica is left to refuse a malformed
// one).
func grpcDeadline(r *http.Request, start time.Time) time.Time {
	if !isGRPC(r) {
		return time.Time{}
	}
	d, ok := parseGRPCTimeout(r.Header.Get("Grpc-Timeout"))
	if !ok {
		return time.Time{}
	}
	return start.Add(d)
}

// grpcUnits are grpc-timeout's units.
var grpcUnits = map[byte]time.Duration{
	'H': time.Hour,
	'M': time.Minute,
	'S': time.Second,
	'm': time.Millisecond,
	'u': time.Microsecond,
	'n': time.Nanosecond,
}

// parseGRPCTimeout parses a grpc-timeout value: at most 8 digits and a
// unit, H, M, S, m, u or n. One too long for a time.Duration (over 292
// years) is the longest there is.
func parseGRPCTimeout(s string) (time.Duration, bool) {
	if len(s) < 2 || len(s) > 9 {
		return 0, false
	}
	unit, ok := grpcUnits[s[len(s)-1]]
	if !ok {
		return 0, false
	}
	var n int64
	for _, c := range []byte(s[:len(s)-1]) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if n > math.MaxInt64/int64(unit) {
		return math.MaxInt64, true
	}
	return time.Duration(n) * unit, true
}

// formatGRPCTimeout writes d as a grpc-timeout value, in the finest unit
// that fits its 8 digits (rounded up, so that it never shortens a call);
// a deadline already passed is 1n.
func formatGRPCTimeout(d time.Duration) string {
	if d <= 0 {
		return "1n"
	}
	for _, u := range []struct {
		unit time.Duration
		c    byte
	}{{time.Nanosecond, 'n'}, {time.Microsecond, 'u'}, {time.Millisecond, 'm'}, {time.Second, 'S'}, {time.Minute, 'M'}} {
		if n := ceilDiv(d, u.unit); n <= 99999999 {
			return strconv.FormatInt(n, 10) + string(u.c)
		}
	}
	return strconv.FormatInt(min(ceilDiv(d, time.Hour), 99999999), 10) + "H"
}

// ceilDiv is d/unit rounded up, for d > 0.
func ceilDiv(d, unit time.Duration) int64 {
	n := d / unit
	if d%unit != 0 {
		n++
	}
	return int64(n)
}
