package balancer

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestRefuse: the proxy's own answers, to a plain client and to a gRPC
// one, written to a recorder.
func TestRefuse(t *testing.T) {
	tests := []struct {
		name        string
		grpc        bool
		proto       int // major HTTP version
		status      int
		code        grpcCode
		retryAfter  string
		wantStatus  int
		wantHeaders map[string]string // "" means absent
		wantBody    string
	}{
		{"503 with Retry-After", false, 1, 503, grpcUnavailable, "3", 503,
			map[string]string{"Retry-After": "3", "Content-Type": "application/json", "Grpc-Status": ""}, `{"error":"no"}` + "\n"},
		{"502", false, 1, 502, grpcUnavailable, "", 502,
			map[string]string{"Retry-After": "", "Content-Length": "15"}, `{"error":"no"}` + "\n"},
		{"gRPC: a status, Retry-After as pushback", true, 2, 503, grpcResourceExhausted, "2", 200,
			map[string]string{"Grpc-Status": "8", "Grpc-Message": "no", "Grpc-Retry-Pushback-Ms": "2000", "Retry-After": "", "Content-Type": "application/grpc"}, ""},
		{"gRPC over HTTP/2 keeps the connection", true, 2, 504, grpcDeadlineExceeded, "", 200,
			map[string]string{"Grpc-Status": "4", "Connection": ""}, ""},
		{"gRPC over HTTP/1 may close it", true, 1, 400, grpcInternal, "", 200,
			map[string]string{"Grpc-Status": "13", "Connection": "close"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/x", nil)
			r.ProtoMajor = tt.proto
			if tt.grpc {
				r.Header.Set("Content-Type", "application/grpc")
			}
			w := httptest.NewRecorder()
			w.Header().Set("Connection", "close")
			if tt.retryAfter != "" {
				w.Header().Set("Retry-After", tt.retryAfter)
			}
			refuse(w, r, tt.status, tt.code, "no")
			if w.Code != tt.wantStatus {
				t.Errorf("status %d, want %d", w.Code, tt.wantStatus)
			}
			for k, v := range tt.wantHeaders {
				if got := w.Header().Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if got := w.Body.String(); got != tt.wantBody {
				t.Errorf("body %q, want %q", got, tt.wantBody)
			}
		})
	}
}

// TestGRPCCodes: the gRPC status for each of the proxy's refusals.
func TestGRPCCodes(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want grpcCode
	}{
		{errQueueFull, grpcResourceExhausted},
		{errPredictedWait, grpcResourceExhausted},
		{errQueueTimeout, grpcDeadlineExceeded},
		{fmt.Errorf("wrapped: %w", errQueueTimeout), grpcDeadlineExceeded},
		{errNoBackend, grpcUnavailable},
	} {
		if got := grpcCodeOf(tt.err); got != tt.want {
			t.Errorf("grpcCodeOf(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
	for status, want := range map[int]grpcCode{
		http.StatusRequestEntityTooLarge: grpcResourceExhausted,
		http.StatusRequestTimeout:        grpcDeadlineExceeded,
		http.StatusGatewayTimeout:        grpcDeadlineExceeded,
		http.StatusBadRequest:            grpcInternal,
		http.StatusBadGateway:            grpcUnavailable,
		http.StatusServiceUnavailable:    grpcUnavailable,
	} {
		if got := grpcCodeFor(status); got != want {
			t.Errorf("grpcCodeFor(%d) = %d, want %d", status, got, want)
		}
	}
}
