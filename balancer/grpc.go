package balancer

import (
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
// an HTTP 503 with a JSON body, which it cannot (refuse.go).

// grpcCode is a gRPC status code (google.golang.org/grpc/codes).
type grpcCode int

const (
	grpcInvalidArgument   grpcCode = 3
	grpcDeadlineExceeded  grpcCode = 4
	grpcResourceExhausted grpcCode = 8
	grpcUnimplemented     grpcCode = 12
	grpcInternal          grpcCode = 13
	grpcUnavailable       grpcCode = 14
)

// isGRPC reports whether r is a gRPC call (gRPC-Web included): its
// Content-Type starts with application/grpc.
func isGRPC(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
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
