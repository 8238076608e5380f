// Package supervisor owns a mattingctl instance's desired state: it starts
// the replicas, restarts them when they crash, replaces them one at a time
// for a rolling restart or recycling, drains and stops them when scaling
// down or stopping, and tells the balancer which ones are ready.
package supervisor

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/fdbudget"
	"github.com/mattingctl/mattingctl/replica"
)

// Defaults for Options.
const (
	DefaultName         = control.DefaultName
	DefaultPort         = 9110
	DefaultReadyTimeout = 5 * time.Minute
	DefaultStopTimeout  = 30 * time.Second
	DefaultPolicy       = "least_conn"
	// DefaultMaxInflight caps each replica's concurrent requests. A
	// single-process model server computes one or a few requests at a
	// time; more in flight only queue inside it, unfairly and unbounded,
	// and past a few hundred it drops connections (the Flask service of
	// the original nginx setup did at ~300). Eight keeps a server with a few threads or
	// dynamic batching busy while the excess waits in the proxy's FIFO
	// queue, where it is bounded, fair and can be retried elsewhere.
	DefaultMaxInflight = 8
	// DefaultQueue bounds the proxy's queue: room for a flood of 1000
	// clients on 4 replicas, with ~220 MiB of the original load test's
	// bodies at most.
	DefaultQueue = 1024
	// DefaultQueueTimeout is `up`'s --queue-timeout when neither it nor
	// --upstream-timeout is given: it follows --upstream-timeout, so that
	// a request waits for a busy replica as long as for a slow one, as
	// nginx waits up to proxy_read_timeout. A request that cannot be
	// served in time is answered at once (balancer/admission.go).
	DefaultQueueTimeout = balancer.DefaultUpstreamTimeout
	DefaultRetries      = 2
	maxPort             = 65535
	// Liveness checks as `mattingctl up` sets them by default: a
	// Kubernetes liveness probe with periodSeconds 5, timeoutSeconds 2 and
	// failureThreshold 3; an unhealthy replica is restarted after 30s out
	// of rotation.
	DefaultHealthInterval        = 5 * time.Second
	DefaultHealthTimeout         = 2 * time.Second
	DefaultUnhealthyAfter        = 3
	DefaultRestartUnhealthyAfter = 30 * time.Second
)

// Options configure one instance, as `mattingctl up` takes them.
type Options struct {
	// Name selects the instance, so several can run; it names the control
	// socket. Empty means DefaultName.
	Name string
	// Command is the model server's command line. {port} and {replica} in
	// its arguments are replaced per replica.
	Command []string
	// Replicas is how many replicas to start with, at least 1.
	Replicas int
	// Host is the proxy's listen address; empty means all interfaces, as
	// nginx's `listen 9110`.
	Host string
	// Port is the proxy's port, 1-65535 (DefaultPort is `up`'s default).
	Port int
	// BasePort is replica 1's port, replica k listening on BasePort+k-1;
	// zero means Port+1.
	BasePort int
	// Health is the path a replica must answer 2xx on before it gets
	// traffic, or "grpc" or "grpc:SERVICE" for the standard gRPC health
	// check (which needs UpstreamProtocol h2c); empty means its port
	// accepting a connection is enough.
	Health string
	// ReadyTimeout bounds a replica's start, until ready; it must be more
	// than zero (DefaultReadyTimeout is `up`'s default).
	ReadyTimeout time.Duration
	// StopTimeout bounds a graceful stop: in-flight requests finishing and
	// replicas exiting after SIGTERM, before SIGKILL. It must be more than
	// zero (DefaultStopTimeout is `up`'s default).
	StopTimeout time.Duration
	// Policy names the balancing policy; empty means DefaultPolicy.
	Policy string
	// Weights gives replica k the weight Weights[k-1] under the weighted
	// policy; replicas past the list weigh 1.
	Weights []int
	// MaxInflight caps each replica's in-flight requests; 0 means no cap.
	MaxInflight int
	// Queue bounds the requests waiting for a replica with room; 0 means
	// no queue: a request finding every replica at its cap gets 503.
	Queue int
	// QueueTimeout bounds a request's wait in the queue, and for a busy
	// replica; a request predicted to wait longer is answered 503 at once.
	// Zero means no limit: a request waits until a replica has room or its
	// client goes. `up` defaults it to UpstreamTimeout.
	QueueTimeout time.Duration
	// Retries is how many other replicas a request may be sent to when one
	// fails to answer it; 0 turns retries off.
	Retries int
	// MaxBody, ClientTimeout, UpstreamTimeout and ConnectTimeout are passed
	// to the balancer; each must be more than zero (the balancer's
	// defaults, balancer.DefaultMaxBody and the others, are `up`'s).
	MaxBody         int64
	ClientTimeout   time.Duration
	UpstreamTimeout time.Duration
	ConnectTimeout  time.Duration
	// Env holds extra KEY=VALUE pairs for every replica.
	Env []string
	// GPUs are handed out to replicas round-robin as CUDA_VISIBLE_DEVICES:
	// replica k gets GPUs[(k-1) % len(GPUs)].
	GPUs []string
	// StartConcurrency bounds how many replicas start (until ready) at
	// once; 0 means all at once.
	StartConcurrency int
	// MaxRequests recycles a replica after it has served this many
	// requests plus a random 0..MaxRequestsJitter; 0 means never (and then
	// MaxRequestsJitter must be 0 too).
	MaxRequests       int
	MaxRequestsJitter int
	// MaxMemory recycles a replica whose process group's resident memory
	// passes this many bytes; 0 means never.
	MaxMemory int64
	// Admin is the address of the admin listener serving /metrics, /livez
	// and /readyz; empty means 127.0.0.1 and the proxy port minus one,
	// "none" turns it off.
	Admin string
	// MinReady is how many replicas must be ready for /readyz to answer
	// 200: at least 1 and at most Replicas. Scaling below it is allowed,
	// with a warning.
	MinReady int
	// DrainDelay is how long, after SIGTERM or SIGINT, the proxy keeps
	// serving while /readyz answers 503, so that load balancers and
	// orchestrator endpoints stop sending first; zero means no delay.
	DrainDelay time.Duration
	// StateDir holds the control socket; empty means control.StateDir().
	StateDir string
	// Stdout and Stderr receive the replicas' prefixed output; nil means
	// io.Discard. Lines reach them through bounded queues that never block
	// a replica (replica.NewOutput); a *nonblock.Writer is used as given.
	Stdout, Stderr io.Writer
	// Logger receives the supervisor's own log; nil means none.
	Logger hclog.Logger
	// Backoff governs restarts after crashes; the zero value uses the
	// documented defaults.
	Backoff CrashBackoff
	// MaxConns caps the client connections the proxy holds open at once;
	// past it new connections wait in the kernel's listen backlog. Zero
	// means the default: the open-file limit minus a reserve for the
	// replicas (see fdbudget.MaxConns).
	MaxConns int
	// HealthInterval is how often every ready replica's liveness is
	// checked (GET Health, or a TCP connect without it); zero means never.
	// `mattingctl up` defaults to DefaultHealthInterval.
	HealthInterval time.Duration
	// HealthTimeout bounds one liveness check; it must be positive when
	// HealthInterval is.
	HealthTimeout time.Duration
	// UnhealthyAfter is how many liveness checks in a row a replica must
	// fail to leave rotation as unhealthy; at least 1 when HealthInterval
	// is set. One passing check brings it back.
	UnhealthyAfter int
	// RestartUnhealthyAfter is how long a replica may stay unhealthy
	// before its process group is killed and it is restarted; zero means
	// at once.
	RestartUnhealthyAfter time.Duration
	// MaxBuffer bounds the request bodies held in memory, in bytes; zero
	// means balancer.DefaultMaxBuffer(), balancer.Off none (every body
	// goes to disk).
	MaxBuffer int64
	// MaxDiskBuffer bounds the request bodies written to BufferDir; zero
	// means balancer.DefaultMaxDiskBuffer, balancer.Off none.
	MaxDiskBuffer int64
	// BufferDir holds the bodies that do not fit in memory; empty means a
	// directory of the instance's own under the system temp directory
	// (DefaultBufferDir).
	BufferDir string
	// ResponseBuffer is the largest response, by its Content-Length, read
	// from a replica ahead of a slow client, in memory counted in
	// MaxBuffer, so that the replica is free once it has sent it; zero
	// means balancer.DefaultResponseBuffer, balancer.Off none.
	ResponseBuffer int64
	// MaxUpgraded caps the upgrade requests (WebSocket) open at once, over
	// all replicas; past it one gets 503. Zero means no cap.
	MaxUpgraded int
	// TLSCert and TLSKey are the PEM files of the proxy port's certificate
	// (chain) and private key: both make the port HTTPS, with HTTP/2 by
	// ALPN; the pair is re-read on SIGHUP and on a rolling restart. Both
	// empty mean cleartext; one without the other is refused.
	TLSCert string
	TLSKey  string
	// AccessLog is where a line per request answered goes: a file,
	// created if missing and appended to, "-" for Stdout, or empty (or
	// AccessLogOff) for none.
	AccessLog string
	// AccessLogFormat is the access log's format, "combined" (nginx's,
	// and mattingctl's fields after it) or "json"; empty means combined.
	AccessLogFormat string
	// CPUs pins replica k, and every thread and process it starts, to the
	// CPUs in CPUs[(k-1) % len(CPUs)], and sets the thread-count variables
	// (OMP_NUM_THREADS and the others in threadVars) it has not been given
	// to that set's size. Nil means no pinning. It has no effect where CPUs
	// cannot be pinned (replica.PinningSupported: Linux only).
	CPUs [][]int
	// Warmup is a file describing a request (replica.LoadWarmup) sent
	// WarmupCount times to every new process of a replica once it is ready
	// and before it gets traffic; empty means no warm-up.
	Warmup string
	// WarmupCount is how many times the warm-up request is sent, one after
	// another; zero means 1.
	WarmupCount int

	warmup *replica.Warmup // Warmup's request, read by withDefaults
	// UpstreamProtocol is what the proxy speaks to the replicas:
	// ProtocolHTTP1 or ProtocolH2C. Empty means ProtocolHTTP1.
	UpstreamProtocol string
	// AdminToken, when not empty, is needed as a bearer token by the
	// dashboard's actions (scale, rolling restart), on any admin address.
	// Empty: the actions are offered only on a loopback admin listener.
	AdminToken string
}

// withDefaults validates o and fills in its defaults.
func (o Options) withDefaults() (Options, error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if err := control.ValidateName(o.Name); err != nil {
		return o, err
	}
	if o.Replicas < 1 {
		return o, fmt.Errorf("--replicas must be at least 1, not %d", o.Replicas)
	}
	if err := o.checkNumbers(); err != nil {
		return o, err
	}
	if o.Port < 1 || o.Port > maxPort {
		return o, fmt.Errorf("--port %d is not a TCP port (1-65535)", o.Port)
	}
	if o.BasePort == 0 {
		o.BasePort = o.Port + 1
	}
	if o.BasePort < 1 || o.BasePort+o.Replicas-1 > maxPort {
		return o, fmt.Errorf("replica ports %d-%d are outside 1-65535", o.BasePort, o.BasePort+o.Replicas-1)
	}
	if o.Port >= o.BasePort && o.Port < o.BasePort+o.Replicas {
		return o, fmt.Errorf("--port %d falls among the replica ports %d-%d; choose another --base-port", o.Port, o.BasePort, o.BasePort+o.Replicas-1)
	}
	if !healthValid(o.Health) {
		return o, fmt.Errorf("--health %q must be a path starting with /, or grpc or grpc:SERVICE", o.Health)
	}
	if o.Policy == "" {
		o.Policy = DefaultPolicy
	}
	if _, err := balancer.NewPolicy(o.Policy); err != nil {
		return o, err
	}
	if len(o.Weights) > 0 && o.Policy != "weighted" {
		return o, fmt.Errorf("--weights applies only to --policy weighted, not %s", o.Policy)
	}
	for i, w := range o.Weights {
		if w < 1 {
			return o, fmt.Errorf("--weights: weight %d of replica-%d must be at least 1", w, i+1)
		}
	}
	if err := o.checkLiveness(); err != nil {
		return o, err
	}
	if o.Admin == "" {
		o.Admin = net.JoinHostPort("127.0.0.1", strconv.Itoa(o.Port-1))
	}
	if o.Admin != "none" {
		host, port, err := net.SplitHostPort(o.Admin)
		if err != nil {
			return o, fmt.Errorf("--admin %q is not HOST:PORT (or none): %v", o.Admin, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > maxPort {
			return o, fmt.Errorf("--admin %q: %q is not a port", o.Admin, port)
		} else if n != 0 && (host == "" || host == "127.0.0.1" || host == "0.0.0.0" || host == "localhost") &&
			(n == o.Port || n >= o.BasePort && n < o.BasePort+o.Replicas) {
			return o, fmt.Errorf("--admin port %d clashes with the proxy or replica ports", n)
		}
	}
	for _, kv := range o.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return o, fmt.Errorf("--env %q is not KEY=VALUE", kv)
		}
	}
	maxConns, err := fdbudget.MaxConns(o.MaxConns, fdbudget.OpenFileLimit(), o.Replicas, o.MaxInflight)
	if err != nil {
		return o, err
	}
	o.MaxConns = maxConns
	if o.StateDir == "" {
		dir, err := control.StateDir()
		if err != nil {
			return o, err
		}
		o.StateDir = dir
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if err := o.bufferDefaults(); err != nil {
		return o, err
	}
	if err := o.responseDefaults(); err != nil {
		return o, err
	}
	if err := o.tlsDefaults(); err != nil {
		return o, err
	}
	if err := o.accessLogDefaults(); err != nil {
		return o, err
	}
	if err := o.cpuDefaults(); err != nil {
		return o, err
	}
	if err := o.warmupDefaults(); err != nil {
		return o, err
	}
	if err := o.checkProtocol(); err != nil {
		return o, err
	}
	if err := o.adminTokenDefaults(); err != nil {
		return o, err
	}
	return o, nil
}

// Validate reports the first problem with opts that can be found without
// starting anything: bad values and a command that cannot be run.
func Validate(opts Options) error {
	if _, err := opts.withDefaults(); err != nil {
		return err
	}
	return replica.CheckCommand(opts.Command)
}
