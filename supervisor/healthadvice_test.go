package supervisor

import (
	"errors"
	"testing"

	"github.com/mattingctl/mattingctl/replica"
)

func TestHealthAdvice(t *testing.T) {
	refused := errors.New("no listener on 127.0.0.1:9111 (connection refused)")
	tests := []struct {
		name  string
		tried []replica.PathAnswer
		want  string
	}{
		{"the first 2xx is suggested", []replica.PathAnswer{{Path: "/health", Code: 404}, {Path: "/healthz", Code: 204}, {Path: "/", Code: 200}},
			"is --health right? the replica answered 204 on /healthz"},
		{"/ alone", []replica.PathAnswer{{Path: "/health", Code: 404}, {Path: "/", Code: 200}},
			"is --health right? the replica answered 200 on /"},
		{"none", []replica.PathAnswer{{Path: "/health", Code: 404}, {Path: "/", Err: refused}},
			"is --health right? the replica answered no 2xx on /health 404, / no listener on 127.0.0.1:9111 (connection refused) either; " +
				"pass the path it serves, or leave --health out to wait only for its port to accept connections"},
		{"nothing tried", nil, "is --health right?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := healthAdvice(tt.tried); got != tt.want {
				t.Errorf("healthAdvice() = %q, want %q", got, tt.want)
			}
		})
	}
}
