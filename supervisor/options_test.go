package supervisor

import (
	"strings"
	"testing"
	"time"
)

func TestOptionsDefaults(t *testing.T) {
	o, err := Options{Command: []string{"x"}, Replicas: 4, StateDir: "/s"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Name != "default" || o.Port != 9110 || o.BasePort != 9111 || o.ReadyTimeout != 5*time.Minute ||
		o.StopTimeout != 30*time.Second || o.Policy != "least_conn" {
		t.Errorf("defaults: %+v", o)
	}
}

func TestOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no replicas", Options{}, "--replicas must be at least 1, not 0"},
		{"negative replicas", Options{Replicas: -2}, "--replicas must be at least 1, not -2"},
		{"port range", Options{Replicas: 1, Port: 70000}, "--port 70000 is not a TCP port"},
		{"replica ports overflow", Options{Replicas: 3, Port: 100, BasePort: 65534}, "replica ports 65534-65536 are outside 1-65535"},
		{"proxy among replicas", Options{Replicas: 3, Port: 9112, BasePort: 9111}, "--port 9112 falls among the replica ports 9111-9113"},
		{"health not a path", Options{Replicas: 1, Health: "health"}, `--health "health" must be a path`},
		{"policy", Options{Replicas: 1, Policy: "random"}, `unknown policy "random"`},
		{"env", Options{Replicas: 1, Env: []string{"NOEQUALS"}}, `--env "NOEQUALS" is not KEY=VALUE`},
		{"name", Options{Replicas: 1, Name: "a/b"}, `--name "a/b"`},
		{"weights without weighted", Options{Replicas: 2, Weights: []int{2, 1}}, "--weights applies only to --policy weighted"},
		{"zero weight", Options{Replicas: 2, Policy: "weighted", Weights: []int{2, 0}}, "weight 0 of replica-2 must be at least 1"},
		{"negative cap", Options{Replicas: 1, MaxInflight: -1}, "--max-inflight must not be negative"},
		{"negative queue", Options{Replicas: 1, Queue: -1}, "--queue must not be negative"},
		{"negative retries", Options{Replicas: 1, Retries: -1}, "--retries must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.o.withDefaults()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}
