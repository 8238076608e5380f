package supervisor

import (
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/internal/accesslog"
)

// upDefaults returns Options as `mattingctl up -r replicas -- x` sets them:
// DefaultOptions, with a command, the replica count and a state directory.
func upDefaults(replicas int) Options {
	o := DefaultOptions()
	o.Command, o.Replicas, o.StateDir = []string{"x"}, replicas, "/s"
	return o
}

func TestOptionsDefaults(t *testing.T) {
	o, err := upDefaults(4).resolve()
	if err != nil {
		t.Fatal(err)
	}
	if o.Name != "default" || o.Port != 9110 || o.BasePort != 9111 || o.ReadyTimeout != 5*time.Minute ||
		o.StopTimeout != 30*time.Second || o.Policy != "least_conn" || o.Admin != "127.0.0.1:9109" {
		t.Errorf("defaults: %+v", o.Options)
	}
	// Parsed once, here: the rest of the supervisor uses these.
	if _, ok := o.policy.(balancer.LeastConn); !ok || o.accessLogFormat != accesslog.Combined || o.warmup != nil || o.cert != nil {
		t.Errorf("resolved: policy %T, format %v, warm-up %v, certificate %v", o.policy, o.accessLogFormat, o.warmup, o.cert)
	}
	// The queue timeout follows the upstream timeout, which the balancer
	// reads from nil; MaxConns and MaxUpgraded are derived, the admin token
	// generated, 32 hex digits.
	if o.QueueTimeout != nil || o.MaxConns <= 0 || o.MaxUpgraded <= 0 || o.MaxUpgraded > o.MaxConns || len(o.AdminToken) != 32 || o.AdminMaxConns != 64 {
		t.Errorf("queue timeout %v, max conns %d, max upgraded %d, token %q, admin max conns %d; want nil, derived, generated and 64",
			o.QueueTimeout, o.MaxConns, o.MaxUpgraded, o.AdminToken, o.AdminMaxConns)
	}
	if again, _ := upDefaults(4).resolve(); again.AdminToken == o.AdminToken {
		t.Errorf("two instances got the same admin token %s", o.AdminToken)
	}
	off := upDefaults(4)
	off.Admin = AdminOff
	if o, err := off.resolve(); err != nil || o.AdminToken != "" {
		t.Errorf("--admin none: token %q, %v; want none", o.AdminToken, err)
	}
}

// TestOptionsZeroMeansWhatItSays: a zero that has a meaning is kept as it
// is, never replaced by a default.
func TestOptionsZeroMeansWhatItSays(t *testing.T) {
	in := upDefaults(2)
	in.QueueTimeout, in.DrainDelay, in.MaxInflight, in.Queue, in.Retries = new(time.Duration(0)), 0, 0, 0, 0
	in.AdaptiveInflight = balancer.InflightBounds{} // with MaxInflight 0: no cap, as --max-inflight 0 sets
	in.StartConcurrency, in.MaxRequests, in.MaxRequestsJitter, in.MaxMemory = 0, 0, 0, 0
	in.MaxBuffer, in.ResponseBuffer, in.HealthInterval, in.RestartUnhealthyAfter = 0, 0, 0, 0
	o, err := in.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if *o.QueueTimeout != 0 || o.DrainDelay != 0 || o.MaxInflight != 0 || o.Queue != 0 || o.Retries != 0 ||
		o.StartConcurrency != 0 || o.MaxRequests != 0 || o.MaxRequestsJitter != 0 || o.MaxMemory != 0 ||
		o.MaxBuffer != 0 || o.ResponseBuffer != 0 || o.HealthInterval != 0 || o.RestartUnhealthyAfter != 0 {
		t.Errorf("a zero was replaced: %+v", o)
	}
	if o.BasePort != o.Port+1 {
		t.Errorf("--base-port 0 = %d, want the proxy port plus one", o.BasePort)
	}
	// Zeros that mean "derive it": the caps from the open-file limit (with
	// --max-inflight 0, upgraded connections as many as client ones), the
	// admin token.
	if o.MaxConns <= 0 || o.MaxUpgraded != o.MaxConns || len(o.AdminToken) != 32 {
		t.Errorf("derived: max conns %d, max upgraded %d, admin token %q", o.MaxConns, o.MaxUpgraded, o.AdminToken)
	}
}

func TestOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		set  func(*Options)
		want string
	}{
		{"no replicas", func(o *Options) { o.Replicas = 0 }, "--replicas must be at least 1, not 0"},
		{"negative replicas", func(o *Options) { o.Replicas = -2 }, "--replicas must be at least 1, not -2"},
		{"port range", func(o *Options) { o.Port = 70000 }, "--port 70000 is not a TCP port"},
		{"port zero", func(o *Options) { o.Port = 0 }, "--port 0 is not a TCP port (1-65535)"},
		{"replica ports overflow", func(o *Options) { o.Replicas, o.Port, o.BasePort = 3, 100, 65534 }, "replica ports 65534-65536 are outside 1-65535"},
		{"negative base port", func(o *Options) { o.BasePort = -1 }, "--base-port must not be negative (0 means the proxy port plus one), not -1"},
		{"proxy among replicas", func(o *Options) { o.Replicas, o.Port, o.BasePort = 3, 9112, 9111 }, "--port 9112 falls among the replica ports 9111-9113"},
		{"health not a path", func(o *Options) { o.Health = "health" }, `--health "health" must be a path starting with /, or grpc or grpc:SERVICE`},
		{"upstream protocol", func(o *Options) { o.UpstreamProtocol = "h2" }, `--upstream-protocol "h2" is not http1 or h2c`},
		{"grpc health over http1", func(o *Options) { o.Health = "grpc" }, "--health grpc needs --upstream-protocol h2c"},
		{"grpc service health over http1", func(o *Options) { o.Health, o.UpstreamProtocol = "grpc:matting", "http1" }, "--health grpc:matting needs --upstream-protocol h2c"},
		{"policy", func(o *Options) { o.Policy = "random" }, `unknown policy "random"`},
		{"env", func(o *Options) { o.Env = []string{"NOEQUALS"} }, `--env "NOEQUALS" is not KEY=VALUE`},
		{"name", func(o *Options) { o.Name = "a/b" }, `--name "a/b"`},
		{"weights without weighted", func(o *Options) { o.Weights = []int{2, 1} }, "--weights applies only to --policy weighted"},
		{"zero weight", func(o *Options) { o.Replicas, o.Policy, o.Weights = 2, "weighted", []int{2, 0} }, "weight 0 of replica-2 must be at least 1"},
		{"negative weight", func(o *Options) { o.Policy, o.Weights = "weighted", []int{-1} }, "weight -1 of replica-1 must be at least 1"},

		{"negative ready timeout", func(o *Options) { o.ReadyTimeout = -time.Second }, "--ready-timeout must not be negative, not -1s"},
		{"zero ready timeout", func(o *Options) { o.ReadyTimeout = 0 }, "--ready-timeout must be more than 0"},
		{"negative stop timeout", func(o *Options) { o.StopTimeout = -5 * time.Second }, "--stop-timeout must not be negative, not -5s"},
		{"zero stop timeout", func(o *Options) { o.StopTimeout = 0 }, "--stop-timeout must be more than 0"},
		{"negative client timeout", func(o *Options) { o.ClientTimeout = -1 }, "--client-timeout must not be negative"},
		{"zero client timeout", func(o *Options) { o.ClientTimeout = 0 }, "--client-timeout must be more than 0"},
		{"negative upstream timeout", func(o *Options) { o.UpstreamTimeout = -1 }, "--upstream-timeout must not be negative"},
		{"zero upstream timeout", func(o *Options) { o.UpstreamTimeout = 0 }, "--upstream-timeout must be more than 0"},
		{"negative send timeout", func(o *Options) { o.SendTimeout = -1 }, "--send-timeout must not be negative"},
		{"zero send timeout", func(o *Options) { o.SendTimeout = 0 }, "--send-timeout must be more than 0"},
		{"negative connect timeout", func(o *Options) { o.ConnectTimeout = -1 }, "--connect-timeout must not be negative"},
		{"zero connect timeout", func(o *Options) { o.ConnectTimeout = 0 }, "--connect-timeout must be more than 0"},
		{"negative queue timeout", func(o *Options) { o.QueueTimeout = new(-time.Second) }, "--queue-timeout must not be negative, not -1s"},
		{"negative drain delay", func(o *Options) { o.DrainDelay = -time.Second }, "--drain-delay must not be negative, not -1s"},

		{"negative cap", func(o *Options) { o.MaxInflight = -1 }, "--max-inflight must not be negative (0 means no cap), not -1"},
		{"adaptive bounds upside down", func(o *Options) { o.AdaptiveInflight = balancer.InflightBounds{Min: 8, Max: 4} }, "--max-inflight auto:8-4: want 1 <= MIN <= MAX, such as auto:1-32"},
		{"adaptive lower bound 0", func(o *Options) { o.AdaptiveInflight = balancer.InflightBounds{Min: 0, Max: 4} }, "--max-inflight auto:0-4: want 1 <= MIN <= MAX, such as auto:1-32"},
		{"negative queue", func(o *Options) { o.Queue = -1 }, "--queue must not be negative (0 means no queue), not -1"},
		{"negative retries", func(o *Options) { o.Retries = -1 }, "--retries must not be negative"},
		{"negative start concurrency", func(o *Options) { o.StartConcurrency = -1 }, "--start-concurrency must not be negative (0 means all at once)"},
		{"negative max requests", func(o *Options) { o.MaxRequests = -1 }, "--max-requests must not be negative (0 means never)"},
		{"negative jitter", func(o *Options) { o.MaxRequests, o.MaxRequestsJitter = 10, -1 }, "--max-requests-jitter must not be negative"},
		{"jitter without max requests", func(o *Options) { o.MaxRequestsJitter = 5 }, "--max-requests-jitter 5 needs --max-requests"},
		{"negative max memory", func(o *Options) { o.MaxMemory = -1 }, "--max-memory must not be negative (0 means never)"},
		{"zero max body", func(o *Options) { o.MaxBody = 0 }, "--max-body must be at least 1, not 0"},
		{"negative max body", func(o *Options) { o.MaxBody = -1 }, "--max-body must be at least 1, not -1"},
		{"zero min ready", func(o *Options) { o.MinReady = 0 }, "--min-ready must be at least 1, not 0"},
		{"negative min ready", func(o *Options) { o.MinReady = -1 }, "--min-ready must be at least 1, not -1"},
		{"min ready above replicas", func(o *Options) { o.Replicas, o.MinReady = 1, 5 }, "--min-ready 5 is more than --replicas 1: /readyz would never answer 200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := upDefaults(1)
			tt.set(&o)
			_, err := o.resolve()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
	// The bounds themselves are accepted.
	o := upDefaults(3)
	o.MinReady, o.MaxBody, o.ReadyTimeout, o.StopTimeout = 3, 1, time.Nanosecond, time.Nanosecond
	if _, err := o.resolve(); err != nil {
		t.Errorf("--min-ready = --replicas, --max-body 1, 1ns timeouts: %v", err)
	}
}

// TestCheckBatch: the --batch-* flags are refused out of their bounds,
// and without the path or the endpoint the other needs, each naming the
// flag.
func TestCheckBatch(t *testing.T) {
	for _, c := range []struct {
		set  func(*balancer.Batch)
		want string // in the error; empty: accepted
	}{
		{func(b *balancer.Batch) {}, ""},
		{func(b *balancer.Batch) { b.Path, b.Endpoint = "/predict", "/batch" }, ""},
		{func(b *balancer.Batch) { b.Endpoint = "/batch" }, "--batch-endpoint /batch needs --batch-path"},
		{func(b *balancer.Batch) { b.Path = "/predict" }, "--batch-path /predict needs --batch-endpoint"},
		{func(b *balancer.Batch) { b.Path, b.Endpoint = "predict", "/batch" }, `--batch-path "predict" must start with /`},
		{func(b *balancer.Batch) { b.Path, b.Endpoint = "/predict", "batch" }, `--batch-endpoint "batch" must start with /`},
		{func(b *balancer.Batch) { b.Path, b.Endpoint = "/predict", "/predict" }, "is --batch-path too"},
		{func(b *balancer.Batch) { b.Path, b.Endpoint, b.Max = "/p", "/b", 1 }, "--batch-max must be from 2 to 256, not 1"},
		{func(b *balancer.Batch) { b.Path, b.Endpoint, b.Max = "/p", "/b", 256 }, ""},
		{func(b *balancer.Batch) { b.Path, b.Endpoint, b.Max = "/p", "/b", 257 }, "--batch-max must be from 2 to 256, not 257"},
		{func(b *balancer.Batch) { b.Path, b.Endpoint, b.Wait = "/p", "/b", 10*time.Second }, ""},
		{func(b *balancer.Batch) { b.Path, b.Endpoint, b.Wait = "/p", "/b", 10*time.Second+1 }, "--batch-wait must be more than 0 and at most 10s"},
		{func(b *balancer.Batch) { b.Path, b.Endpoint, b.Wait = "/p", "/b", 0 }, "--batch-wait must be more than 0"},
	} {
		o := upDefaults(1)
		c.set(&o.Batch)
		err := o.checkBatch()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v; want accepted", o.Batch, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: %v; want an error with %q", o.Batch, err, c.want)
		}
	}
}
