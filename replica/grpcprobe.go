package replica

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// A replica that speaks h2c only (--upstream-protocol h2c) is checked over
// h2c: its HTTP check is an HTTP/2 GET with prior knowledge. A gRPC server
// is checked with the standard health service, grpc.health.v1.Health/Check
// (https://github.com/grpc/grpc/blob/master/doc/health-checking.md): the
// check passes when it answers SERVING. The call is made here over h2c
// with the two small messages encoded by hand (a string field, an enum
// field), so that mattingctl does not link a gRPC client for one call.

// GRPCHealth reads a --health value that asks for a gRPC health check:
// "grpc" (the server as a whole) or "grpc:SERVICE". ok is false for any
// other value.
func GRPCHealth(health string) (service string, ok bool) {
	if health == "grpc" {
		return "", true
	}
	service, ok = strings.CutPrefix(health, "grpc:")
	return service, ok
}

// healthCheckPath is the gRPC health check's method.
const healthCheckPath = "/grpc.health.v1.Health/Check"

// servingStatus names grpc.health.v1.HealthCheckResponse.ServingStatus.
var servingStatus = []string{"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"}

// grpcCodes names the gRPC status codes.
var grpcCodes = []string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
	"OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

// GRPCHealthError is a gRPC health check that was answered, but not with
// SERVING: Status is the serving status's name (NOT_SERVING), or the call
// failed with a gRPC status (Code, its name, and Message), or got an HTTP
// answer that is not gRPC (HTTPStatus).
type GRPCHealthError struct {
	Service    string
	Status     string
	Code       string
	Message    string
	HTTPStatus int
}

func (e *GRPCHealthError) Error() string {
	what := "grpc health check"
	if e.Service != "" {
		what += fmt.Sprintf(" of %q", e.Service)
	}
	switch {
	case e.Status != "":
		return what + " -> " + e.Status
	case e.Code != "" && e.Message != "":
		return what + " -> " + e.Code + ": " + e.Message
	case e.Code != "":
		return what + " -> " + e.Code
	default:
		return fmt.Sprintf("%s -> HTTP %d, not a gRPC answer", what, e.HTTPStatus)
	}
}

// httpClient is the client for p's HTTP and gRPC checks.
func (p Probe) httpClient() *http.Client {
	switch {
	case p.Client != nil:
		return p.Client
	case p.H2C || p.GRPC:
		return probeH2CClient
	default:
		return probeClient
	}
}

var probeH2CClient = func() *http.Client {
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil, Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}()

// checkGRPC calls Health/Check of p.GRPCService under ctx, which ends at
// the check's timeout; parent is the caller's context.
func (p Probe) checkGRPC(parent, ctx context.Context, timeout time.Duration) error {
	msg := protowire.AppendTag(nil, 1, protowire.BytesType)
	msg = protowire.AppendString(msg, p.GRPCService)
	if p.GRPCService == "" {
		msg = nil // proto3 leaves a default value out
	}
	body := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:], uint32(len(msg)))
	body = append(body, msg...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+p.Addr+healthCheckPath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("Grpc-Timeout", strconv.FormatInt(max(timeout.Milliseconds(), 1), 10)+"m")
	resp, err := p.httpClient().Do(req)
	if err != nil {
		return p.failed(err, timeout, ended(parent))
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return p.failed(err, timeout, ended(parent))
	}
	herr := &GRPCHealthError{Service: p.GRPCService}
	code := resp.Trailer.Get("Grpc-Status")
	message := resp.Trailer.Get("Grpc-Message")
	if code == "" { // trailers-only
		code, message = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	}
	if resp.StatusCode != http.StatusOK || code == "" {
		herr.HTTPStatus = resp.StatusCode
		return herr
	}
	if code != "0" {
		herr.Code = code
		if n, err := strconv.Atoi(code); err == nil && n >= 0 && n < len(grpcCodes) {
			herr.Code = grpcCodes[n]
		}
		herr.Message, _ = url.PathUnescape(message)
		return herr
	}
	status, err := servingStatusOf(answer)
	if err != nil {
		herr.Code, herr.Message = "OK", err.Error()
		return herr
	}
	if status != 1 {
		herr.Status = strconv.FormatUint(status, 10)
		if status < uint64(len(servingStatus)) {
			herr.Status = servingStatus[status]
		}
		return herr
	}
	return nil
}

// servingStatusOf reads the status field of the one HealthCheckResponse in
// a gRPC answer's body.
func servingStatusOf(body []byte) (uint64, error) {
	if len(body) < 5 {
		return 0, errors.New("no response message")
	}
	if body[0] != 0 {
		return 0, errors.New("a compressed response message")
	}
	n := binary.BigEndian.Uint32(body[1:5])
	msg := body[5:]
	if uint32(len(msg)) != n {
		return 0, errors.New("a malformed response message")
	}
	var status uint64 // absent: UNKNOWN
	for len(msg) > 0 {
		num, typ, tn := protowire.ConsumeTag(msg)
		if tn < 0 {
			return 0, errors.New("a malformed response message")
		}
		msg = msg[tn:]
		if num == 1 && typ == protowire.VarintType {
			v, vn := protowire.ConsumeVarint(msg)
			if vn < 0 {
				return 0, errors.New("a malformed response message")
			}
			status, msg = v, msg[vn:]
			continue
		}
		fn := protowire.ConsumeFieldValue(num, typ, msg)
		if fn < 0 {
			return 0, errors.New("a malformed response message")
		}
		msg = msg[fn:]
	}
	return status, nil
}

// answeredHTTP1 reports whether an h2c request failed because the server
// answered in HTTP/1.1: its status line read as an HTTP/2 frame header.
func answeredHTTP1(err error) bool {
	return strings.Contains(err.Error(), "frame header looked like an HTTP/1.1 header")
}
