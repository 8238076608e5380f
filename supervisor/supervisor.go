package supervisor

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/internal/accesslog"
	"github.com/mattingctl/mattingctl/internal/admin"
	"github.com/mattingctl/mattingctl/replica"
)

// Supervisor runs one instance: the replicas and the proxy in front of
// them. It is what the control socket and the admin endpoints serve.
type Supervisor struct {
	// ilog is the instance's log: log, but for the first of several
	// services, whose log names it, the instance's.
	ilog hclog.Logger
	// opts is the configuration in force, never changed once stored: a
	// reload stores a new one (reload.go). Read it with cfg.
	opts    atomic.Pointer[config]
	log     hclog.Logger
	out     *replica.Output
	bal     *balancer.Balancer
	metrics *admin.Metrics
	history *admin.History   // the dashboard's charts and timeline
	usage   *replica.Sampler // CPU and memory of every replica, one scan for all
	alog    *accesslog.Log   // nil when off
	started time.Time
	// proxyURL is the proxy's URL as up prints it, and allInterfaces
	// whether it listens on every interface (proxyurl.go).
	proxyURL      string
	allInterfaces bool

	// ctx is cancelled, with the reason as its cause, when a stop is
	// requested; force is cancelled when the stop must skip its waits (a
	// second Ctrl-C). stopped is closed once every replica has stopped.
	ctx       context.Context
	cancel    context.CancelCauseFunc
	force     context.Context
	forceStop context.CancelFunc
	stopped   chan struct{}
	stopOnce  sync.Once

	// bg is every goroutine the instance runs in the background; Run
	// waits for them all before it returns.
	bg group

	scaleMu sync.Mutex // serialises Scale calls and rolling restarts
	// reloadMu serialises reloads and sets, each held to its end, and
	// guards reload.
	reloadMu  sync.Mutex
	reload    reloadState
	infoMu    sync.Mutex // guards info
	info      reloadInfo
	restartMu sync.Mutex // held while a rolling restart runs

	mu      sync.Mutex     // guards the fields below
	slots   map[int]*slot  // the replicas wanted, by id
	removed map[*slot]bool // replicas scaled away, until they have stopped
	desired int
	ports   map[int]*slot // replica port -> the slot holding it
	admin   string        // the admin listener's address, "" when off
	auto    *autoState    // the autoscaler's, for status; nil when the count is fixed from the start

	starting chan struct{} // a token per replica starting; nil: no limit

	testHookScale func() // called in Scale before it takes mu; tests only

	changeMu sync.Mutex    // guards changed
	changed  chan struct{} // closed at the next state change; see stateChange

	// tracker contains and records every replica process so that none,
	// nor anything it starts, outlives the instance; set by Run.
	tracker *replica.Tracker

	// For an instance of several services (services.go): service and route
	// are this one's name and route; services, in the first service's
	// supervisor only, is every service's, itself first, and instMetrics
	// the /metrics of them all.
	// lastPort, when not 0, is the last port of the service's block, past
	// which its replicas and their successors may not listen.
	service, route string
	strip          bool
	lastPort       int
	basePort       int // the instance's base-port as given, in the first's
	services       []*Supervisor
	instMetrics    *admin.Metrics
	// instHistory is the dashboard's of every service, which each one's
	// events go to as well; nil for an instance of one.
	instHistory *admin.History
}

// New validates opts and returns a supervisor that has started nothing.
func New(opts Options) (*Supervisor, error) {
	if len(opts.Services) > 0 {
		return newServices(opts)
	}
	c, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	if err := replica.CheckCommand(c.Command); err != nil {
		return nil, err
	}
	return build(c, opts, nil, ""), nil
}

// build returns the supervisor of c, resolved from raw. first, when not
// nil, is the first service of the instance c is another service of: its
// stop stops this one, and its access log and body budgets are this
// one's; service is the service's name.
func build(c *config, raw Options, first *Supervisor, service string) *Supervisor {
	s := &Supervisor{
		service: service,
		log:     c.Logger,
		ilog:    c.Logger,
		out:     newOutput(c, service, first),
		usage:   replica.NewSampler(time.Second),
		started: time.Now(),
		slots:   make(map[int]*slot),
		removed: make(map[*slot]bool),
		ports:   make(map[int]*slot),
		stopped: make(chan struct{}),
	}
	s.proxyURL, s.allInterfaces = proxyURL(c.cert != nil, c.Host, c.Port)
	s.opts.Store(c)
	s.reload.raw = raw
	keepRuntime(&s.reload.raw, &c.Options)
	if c.Source != nil {
		s.reload.content, s.reload.fixed = c.Source.Content, c.Source.Fixed
	}
	parent, force := context.Background(), context.Background()
	if first != nil {
		parent, force = first.ctx, first.force
	}
	s.ctx, s.cancel = context.WithCancelCause(parent)
	s.force, s.forceStop = context.WithCancel(force)
	if c.Autoscaled() {
		s.auto = &autoState{on: true, target: c.Replicas}
	}
	if c.StartConcurrency > 0 {
		s.starting = make(chan struct{}, c.StartConcurrency)
	}
	s.metrics = admin.NewMetrics(s)
	s.history = admin.NewHistory(s.metrics)
	if first != nil {
		s.alog = first.alog
	} else {
		s.alog = newAccessLog(c)
	}
	var alog balancer.AccessLogger // a nil *accesslog.Log would not be a nil interface
	if s.alog != nil {
		alog = s.alog
	}
	var share *balancer.Balancer // the body budgets of another service's
	if first != nil {
		share = first.bal
	}
	var tlsConfig *tls.Config
	if c.cert != nil {
		tlsConfig = c.cert.tlsConfig()
	}
	s.bal = balancer.New(balancer.Options{
		Limits:      c.Limits,
		Policy:      c.policy,
		Observer:    s.metrics,
		Logger:      s.log.Named("proxy"),
		TLS:         tlsConfig,
		AccessLog:   alog,
		UpstreamH2C: c.UpstreamProtocol == ProtocolH2C,
		Share:       share,
	})
	return s
}

// cfg returns the configuration in force. The value must not be changed.
func (s *Supervisor) cfg() *config { return s.opts.Load() }

// Stop asks the instance to stop gracefully, for reason, and returns at
// once; Stopped is closed when it has.
func (s *Supervisor) Stop(reason string) {
	s.cancel(errors.New(reason))
}

// Stopped is closed once every replica has stopped.
func (s *Supervisor) Stopped() <-chan struct{} { return s.stopped }
