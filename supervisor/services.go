package supervisor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/internal/admin"
	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/replica"
)

// Service is one model server of several behind the instance's one port:
// an entry of the config file's services list. Each has its own replicas,
// restarts, limits, queue and admission; a request goes to the service
// whose route it matches.
type Service struct {
	// Name names the service: in status, logs and metrics, and for
	// --service. It is a name as the instance's is (control.ValidateName).
	Name string
	// Route is a path prefix starting with "/" ("/matting/") or
	// "host:NAME" (balancer.Route).
	Route string
	// StripPrefix removes the route's prefix from the path before a
	// request is forwarded.
	StripPrefix bool
	// Options are the service's settings: its command, its replicas and
	// any of up's others. The instance's own (InstanceWide) are taken
	// from the instance's Options, whatever these say.
	Options Options
}

// InstanceWide are the settings, by up's flag names, that belong to the
// instance rather than to one of its services: there is one proxy port,
// one admin listener, one access log and one set of client connections.
var InstanceWide = []string{
	"name", "port", "host", "admin", "admin-token", "admin-max-conns",
	"tls-cert", "tls-key", "access-log", "access-log-format",
	"max-conns", "client-timeout", "send-timeout", "drain-delay", "stop-timeout",
	"buffer-dir", "max-buffer", "max-disk-buffer", "max-client-uploads", "max-client-buffer",
}

// serviceOptions are svc's Options with the instance-wide settings of
// inst, and basePort as the replicas' first port unless svc gives one.
func serviceOptions(inst Options, svc Service, basePort int) Options {
	o := svc.Options
	o.Name, o.StateDir = inst.Name, inst.StateDir
	o.Host, o.Port = inst.Host, inst.Port
	o.AdminOptions = inst.AdminOptions
	o.TLSOptions = inst.TLSOptions
	o.AccessLogOptions = inst.AccessLogOptions
	// The port's server times its connections' headers and, over HTTP/2,
	// its writes: one client timeout and one send timeout for all.
	o.MaxConns, o.ClientTimeout, o.SendTimeout = inst.MaxConns, inst.ClientTimeout, inst.SendTimeout
	o.DrainDelay, o.StopTimeout = inst.DrainDelay, inst.StopTimeout
	// One budget for the bodies of all, each client address's share of it
	// (build passes the first service's to the others' balancers).
	o.BufferDir, o.MaxBuffer, o.MaxDiskBuffer = inst.BufferDir, inst.MaxBuffer, inst.MaxDiskBuffer
	o.MaxClientUploads, o.MaxClientBuffer = inst.MaxClientUploads, inst.MaxClientBuffer
	o.Stdout, o.Stderr, o.Reaper = inst.Stdout, inst.Stderr, inst.Reaper
	o.Logger = inst.Logger
	if o.Logger != nil {
		o.Logger = o.Logger.With("service", svc.Name)
	}
	// Told once, by the instance: its readiness is all services'.
	o.OnReady, o.OnStopping = nil, nil
	// A reload reads the whole file: the instance's (not yet built).
	o.Source, o.OnReload = nil, nil
	o.Services = nil
	// The open-file limit is shared: the connections to every service's
	// replicas, and the client connections, which the first plans for.
	o.shareOf = len(inst.Services)
	if o.BasePort == 0 {
		o.BasePort = basePort
	}
	return o
}

// serviceSource is how service svc's settings are read again: the
// instance's file, svc's entry in it, with the instance's settings. A
// file that no longer lists svc, or gives it another route, is refused:
// services and their routes cannot change while the instance runs.
// basePort is what svc's replicas started from unless the file gives
// one. Nil when the instance cannot change its settings.
func serviceSource(inst *Source, svc Service, basePort int) *Source {
	if inst == nil || inst.LoadService == nil {
		return nil
	}
	src := *inst
	src.Load = func(content []byte, settings []string) (Options, map[string]string, error) {
		o, fixed, err := inst.LoadService(svc.Name, content, settings)
		if err != nil {
			return Options{}, nil, err
		}
		i := slices.IndexFunc(o.Services, func(s Service) bool { return s.Name == svc.Name })
		if i < 0 {
			return Options{}, nil, fmt.Errorf("%s no longer lists service %s: %w", inst.File, svc.Name, errServicesFixed)
		}
		if now := o.Services[i]; now.Route != svc.Route || now.StripPrefix != svc.StripPrefix {
			return Options{}, nil, fmt.Errorf("service %s: its route or strip_prefix changed: %w", svc.Name, errServicesFixed)
		}
		return serviceOptions(o, o.Services[i], basePort), fixed, nil
	}
	return &src
}

// errServicesFixed refuses a reload that would add, remove or re-route a
// service.
var errServicesFixed = errors.New("the services and their routes cannot change while the instance runs (down, then up -f); nothing was changed")

// routeOf is svc's route as the balancer takes it.
func routeOf(svc Service) balancer.Route {
	r := balancer.Route{Name: svc.Name, StripPrefix: svc.StripPrefix}
	if h, ok := strings.CutPrefix(svc.Route, "host:"); ok {
		r.Host = h
	} else {
		r.Prefix = svc.Route
	}
	return r
}

// newServices returns the supervisor of an instance of several services:
// the first service's, which serves the port, with every service's
// (itself first) in services. Replicas get consecutive ports, service
// after service, unless a service gives its own --base-port.
func newServices(opts Options) (*Supervisor, error) {
	if len(opts.Command) > 0 {
		return nil, fmt.Errorf("a command is given, and services too: with services, each has its own command")
	}
	// The instance's settings first, so that a mistake in one is not
	// blamed on the first service.
	if _, err := opts.resolve(); err != nil {
		return nil, err
	}
	var (
		svcs   []*Supervisor
		routes []balancer.Route
		names  = map[string]bool{}
		next   = opts.BasePort
	)
	if next == 0 {
		next = opts.Port + 1
	}
	type portRange struct {
		name     string
		from, to int
	}
	var taken []portRange
	// The routes first, and nothing built when they are wrong.
	for _, svc := range opts.Services {
		routes = append(routes, routeOf(svc))
	}
	if err := balancer.CheckRoutes(routes); err != nil {
		return nil, err
	}
	// A service refused after others were built: their output's writers
	// stop with it.
	failed := func(err error) (*Supervisor, error) {
		for _, s := range svcs {
			s.out.Close()
		}
		return nil, err
	}
	for i, svc := range opts.Services {
		if control.ValidateName(svc.Name) != nil {
			return failed(fmt.Errorf("service %d: name %q: use letters, digits, '.', '_' and '-' (at most 64)", i+1, svc.Name))
		}
		if names[svc.Name] {
			return failed(fmt.Errorf("two services are called %s", svc.Name))
		}
		names[svc.Name] = true
		so := serviceOptions(opts, svc, next)
		so.Source = serviceSource(opts.Source, svc, next)
		c, err := so.resolve()
		if err != nil {
			return failed(fmt.Errorf("service %s: %w", svc.Name, err))
		}
		if err := replica.CheckCommand(c.Command); err != nil {
			return failed(fmt.Errorf("service %s: %w", svc.Name, err))
		}
		from, to := c.BasePort, c.BasePort+portBlock(c.MostReplicas())-1
		if i == len(opts.Services)-1 {
			to = maxPort // the last grows as far as ports go
		}
		for _, t := range taken {
			if from <= t.to && t.from <= to {
				return failed(fmt.Errorf("service %s: its ports %d-%d overlap service %s's, %d-%d; give it another base-port", svc.Name, from, min(to, from+portBlock(c.MostReplicas())-1), t.name, t.from, t.to))
			}
		}
		if opts.Port >= from && opts.Port <= to && i < len(opts.Services)-1 {
			return failed(fmt.Errorf("service %s: its ports %d-%d include the proxy's, %d; give it another base-port", svc.Name, from, to, opts.Port))
		}
		taken = append(taken, portRange{svc.Name, from, to})
		next = to + 1
		var first *Supervisor
		if len(svcs) > 0 {
			first = svcs[0]
		}
		s := build(c, so, first, svc.Name)
		s.route, s.strip, s.lastPort = svc.Route, svc.StripPrefix, to
		svcs = append(svcs, s)
		routes[i].To = s.bal
	}
	s := svcs[0]
	s.services, s.basePort = svcs, opts.BasePort
	if opts.Logger != nil {
		s.ilog = opts.Logger
	}
	// The instance's service manager is told of its start, stop and
	// SIGHUPs by the first service, which serves the port.
	c := s.opts.Load()
	c.OnReady, c.OnStopping, c.OnReload = opts.OnReady, opts.OnStopping, opts.OnReload
	s.bal.SetRouter(balancer.NewRouter(routes))
	// One /metrics for all: each service's series labelled with its name.
	s.instMetrics = admin.NewInstanceMetrics(s)
	// One dashboard for all, fed by every service's requests, samples
	// and events; each service keeps its own history for its quantiles.
	instHistory := admin.NewHistory(s.instMetrics)
	for _, svc := range svcs {
		svc.metrics = s.instMetrics.Service(svc, svc.service)
		svc.history = admin.NewHistory(svc.metrics)
		svc.instHistory = instHistory
		svc.bal.SetObserver(svc.metrics)
	}
	return s, nil
}

// portBlock is how many ports a service of several is given, for most
// replicas: room to scale to four times that by hand, and for the spare
// ports of rolling restarts, and at least 16. The last service's block
// runs to the last port.
func portBlock(most int) int { return max(16, 4*most) }

// others are the services after the first, which serves the port: none
// for an instance of one.
func (s *Supervisor) others() []*Supervisor {
	if len(s.services) < 2 {
		return nil
	}
	return s.services[1:]
}

// all are the instance's services, s first: s alone for an instance of
// one.
func (s *Supervisor) all() []*Supervisor {
	if len(s.services) == 0 {
		return []*Supervisor{s}
	}
	return s.services
}

// instance is what the control socket and the admin endpoints serve for an
// instance of several services: the first service's supervisor, whose
// calls that change replicas need a service named.
type instance struct{ *Supervisor }

// Service returns the service called name (control.Services).
func (in instance) Service(name string) (control.Instance, error) {
	for _, s := range in.services {
		if s.service == name {
			return s, nil
		}
	}
	return nil, fmt.Errorf("--service %s: no such service; the services are %s", name, strings.Join(in.names(), ", "))
}

func (in instance) names() []string {
	names := make([]string, len(in.services))
	for i, s := range in.services {
		names[i] = s.service
	}
	return names
}

// errNoService refuses a call that changes replicas without naming the
// service.
func (in instance) errNoService() error {
	return fmt.Errorf("this instance runs several services (%s): name one with --service", strings.Join(in.names(), ", "))
}

func (in instance) Scale(context.Context, int) (control.ScaleResult, error) {
	return control.ScaleResult{}, in.errNoService()
}

func (in instance) RollingRestart(context.Context) (control.RestartResult, error) {
	return control.RestartResult{}, in.errNoService()
}

func (in instance) RestartReplica(context.Context, int) (control.RestartResult, error) {
	return control.RestartResult{}, in.errNoService()
}

// Reload reads the file again and applies what changed to every service,
// one after another, each as its own reload does. A file whose services
// or routes differ from those running is refused, changing nothing. The
// changes are named SERVICE:SETTING.
func (in instance) Reload(ctx context.Context) (control.ReloadResult, error) {
	res := control.ReloadResult{Name: in.cfg().Name, Changes: []control.Change{}}
	if err := in.checkReload(); err != nil {
		in.reloadMu.Lock()
		in.reloading()()
		in.reloadMu.Unlock()
		return res, err
	}
	var done []string
	for _, s := range in.services {
		r, err := s.Reload(ctx)
		res.File = r.File
		for _, ch := range r.Changes {
			ch.Setting = s.service + ":" + ch.Setting
			res.Changes = append(res.Changes, ch)
		}
		res.Scale = mergeScale(res.Scale, r.Scale)
		res.Restart = mergeRestart(res.Restart, r.Restart)
		if err != nil {
			if len(done) > 0 {
				err = fmt.Errorf("service %s: %w (reloaded before it: %s)", s.service, err, strings.Join(done, ", "))
			} else {
				err = fmt.Errorf("service %s: %w", s.service, err)
			}
			return res, err
		}
		done = append(done, s.service)
	}
	return res, nil
}

// mergeScale adds b, a service's scale, to a, the reload's so far: the
// counts summed, the replicas (named by their service) listed together.
func mergeScale(a, b *control.ScaleResult) *control.ScaleResult {
	if a == nil || b == nil {
		return cmp.Or(a, b)
	}
	m := *a
	m.From, m.To = a.From+b.From, a.To+b.To
	m.Started, m.Stopped = append(slices.Clip(a.Started), b.Started...), append(slices.Clip(a.Stopped), b.Stopped...)
	m.Errors, m.Warnings = append(slices.Clip(a.Errors), b.Errors...), append(slices.Clip(a.Warnings), b.Warnings...)
	m.AutoscaleOff = cmp.Or(a.AutoscaleOff, b.AutoscaleOff)
	return &m
}

// mergeRestart adds b, a service's rolling restart, to a, the reload's so
// far.
func mergeRestart(a, b *control.RestartResult) *control.RestartResult {
	if a == nil || b == nil {
		return cmp.Or(a, b)
	}
	m := *a
	m.Replaced, m.Skipped = append(slices.Clip(a.Replaced), b.Replaced...), append(slices.Clip(a.Skipped), b.Skipped...)
	if b.Error != "" {
		m.Error = strings.TrimPrefix(a.Error+"; "+b.Error, "; ")
	}
	m.CertError = cmp.Or(a.CertError, b.CertError)
	return &m
}

// checkReload refuses a reload, changing nothing, when the file cannot be
// read or parsed, lists other services or routes than those running,
// changes the instance's base-port, or a change to any service would be
// refused.
func (in instance) checkReload() error {
	src := in.cfg().Source
	if src == nil || src.LoadService == nil {
		return errSeveral
	}
	content, err := os.ReadFile(src.File)
	if err != nil {
		return fmt.Errorf("config file: %w; nothing was changed", err)
	}
	o, _, err := src.LoadService("", content, nil)
	if err != nil {
		return fmt.Errorf("%w; nothing was changed", err)
	}
	var now, running []string
	for _, svc := range o.Services {
		now = append(now, fmt.Sprintf("%s %s %t", svc.Name, svc.Route, svc.StripPrefix))
	}
	for _, s := range in.services {
		running = append(running, fmt.Sprintf("%s %s %t", s.service, s.route, s.strip))
	}
	if !slices.Equal(now, running) {
		return fmt.Errorf("%s lists other services or routes than those running: %w", src.File, errServicesFixed)
	}
	if o.BasePort != in.basePort {
		return fmt.Errorf("base-port cannot change while the instance runs (restart up to change it); nothing was changed")
	}
	for _, s := range in.services {
		s.reloadMu.Lock()
		_, _, _, err := s.checkChange(content, nil)
		s.reloadMu.Unlock()
		if err != nil {
			return fmt.Errorf("service %s: %w", s.service, err)
		}
	}
	return nil
}

// Set needs a service: settings are a service's.
func (in instance) Set(context.Context, []string) (control.ReloadResult, error) {
	return control.ReloadResult{}, in.errNoService()
}

// errSeveral refuses reload and set in an instance of several services
// that cannot read its settings again.
var errSeveral = errors.New("this instance of several services cannot change its settings: it was not started by mattingctl up -f")

// Status is every service's status, summed up, with each one's in
// Services.
func (in instance) Status() control.Status {
	st := in.Supervisor.Status()
	st.Services = make([]control.Status, 0, len(in.services))
	st.Desired, st.Queued, st.QueueMax = 0, 0, 0
	st.Rejected, st.Retried, st.Failed = 0, 0, 0
	st.Quarantined, st.QuarantineHits, st.ClientLimited = 0, 0, 0
	st.SendTimeouts, st.UpstreamTimeouts = 0, 0
	st.Batches, st.Batched, st.BatchesSplit = 0, 0, 0
	st.Replicas, st.Command, st.Settings = nil, nil, nil
	st.AdaptiveInflight, st.Autoscale, st.Changed, st.ChangedAt, st.ChangedBy = nil, nil, nil, nil, ""
	st.Service, st.Route = "", ""
	for _, s := range in.services {
		ss := s.Status()
		ss.Service, ss.Route, ss.StripPrefix = s.service, s.route, s.strip
		// A connection carries requests to any service: the instance's.
		ss.Conns, ss.MaxConns = st.Conns, st.MaxConns
		for i := range ss.Replicas {
			ss.Replicas[i].Service = s.service
		}
		st.Desired += ss.Desired
		st.Queued += ss.Queued
		st.QueueMax += ss.QueueMax
		st.Rejected += ss.Rejected
		st.Retried += ss.Retried
		st.Failed += ss.Failed
		st.Quarantined += ss.Quarantined
		st.QuarantineHits += ss.QuarantineHits
		st.ClientLimited += ss.ClientLimited
		st.SendTimeouts += ss.SendTimeouts
		st.UpstreamTimeouts += ss.UpstreamTimeouts
		st.Batches += ss.Batches
		st.Batched += ss.Batched
		st.BatchesSplit += ss.BatchesSplit
		st.MaxInflight = max(st.MaxInflight, ss.MaxInflight)
		st.Replicas = append(st.Replicas, ss.Replicas...)
		st.Services = append(st.Services, ss)
	}
	// Every replica's response times together, as for one service.
	parts := make(map[*balancer.Balancer][]*balancer.Backend, len(in.services))
	for _, s := range in.services {
		for _, sl := range s.snapshot() {
			cur, prev, _ := sl.backends()
			parts[s.bal] = append(parts[s.bal], cur, prev)
		}
	}
	st.Latency = latencyStatus(balancer.LatencyOf(parts))
	return st
}

// Readiness is ready when every service is: the instance serves all its
// routes or is not ready. Its counts are those of the service furthest
// from its --min-ready.
func (in instance) Readiness() admin.Readiness {
	rd := in.Supervisor.Readiness()
	for _, s := range in.others() {
		if r := s.Readiness(); r.Ready-r.MinReady < rd.Ready-rd.MinReady {
			rd.Ready, rd.MinReady = r.Ready, r.MinReady
		}
	}
	return rd
}
