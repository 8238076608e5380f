package supervisor

import (
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/internal/accesslog"
	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/fdbudget"
	"github.com/mattingctl/mattingctl/replica"
)

// config is Options resolved: every value checked, every zero that stands
// for something derived (BasePort, Admin, AdminToken, MaxConns,
// MaxUpgraded, BufferDir, StateDir) filled in, paths made absolute, and
// what needs parsing parsed, once. The supervisor reads only this, and
// never parses an option again.
type config struct {
	Options
	policy          balancer.Policy  // Policy's
	warmup          *replica.Warmup  // Warmup's request; nil: no warm-up
	cert            *certificate     // TLSCert and TLSKey, loaded; nil: cleartext
	accessLogFormat accesslog.Format // AccessLogFormat's
	budget          fdbudget.Budget  // the open-file limit shared out; MaxConns and MaxUpgraded are its
}

// maxPort is the highest TCP port.
const maxPort = 65535

// resolve checks o and returns it resolved, or the first problem found,
// naming the flag and what to do. It is the one place options are
// validated: Validate and New both call it.
func (o Options) resolve() (*config, error) {
	if o.Name == "" {
		o.Name = control.DefaultName
	}
	if err := control.ValidateName(o.Name); err != nil {
		return nil, err
	}
	if o.Replicas < 1 {
		return nil, fmt.Errorf("--replicas must be at least 1, not %d", o.Replicas)
	}
	if err := o.checkNumbers(); err != nil {
		return nil, err
	}
	if err := o.checkBatch(); err != nil {
		return nil, err
	}
	if err := o.checkAutoscale(); err != nil {
		return nil, err
	}
	if err := o.resolvePorts(); err != nil {
		return nil, err
	}
	if !healthValid(o.Health) {
		return nil, fmt.Errorf("--health %q must be a path starting with /, or grpc or grpc:SERVICE", o.Health)
	}
	policy, err := o.resolvePolicy()
	if err != nil {
		return nil, err
	}
	if err := o.checkLiveness(); err != nil {
		return nil, err
	}
	if err := o.resolveAdmin(); err != nil {
		return nil, err
	}
	for _, kv := range o.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("--env %q is not KEY=VALUE", kv)
		}
	}
	// QueueTimeout stays as it is: nil is the UpstreamTimeout value, which
	// the balancer reads (balancer.Limits).
	budget, err := o.planFiles(o.fileLimit())
	if err != nil {
		return nil, err
	}
	o.MaxConns, o.MaxUpgraded = budget.MaxConns, budget.MaxUpgraded
	if o.StateDir == "" {
		if o.StateDir, err = control.StateDir(); err != nil {
			return nil, err
		}
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
	if err := o.resolveBufferDir(); err != nil {
		return nil, err
	}
	cert, err := o.resolveTLS()
	if err != nil {
		return nil, err
	}
	format, err := o.resolveAccessLog()
	if err != nil {
		return nil, err
	}
	if err := o.checkCPUs(); err != nil {
		return nil, err
	}
	warmup, err := o.loadWarmup()
	if err != nil {
		return nil, err
	}
	if err := o.checkProtocol(); err != nil {
		return nil, err
	}
	return &config{Options: o, policy: policy, warmup: warmup, cert: cert, accessLogFormat: format, budget: budget}, nil
}

// resolvePorts checks the proxy port and the replicas' ports, giving
// BasePort its default, the proxy port plus one.
func (o *Options) resolvePorts() error {
	if o.Port < 1 || o.Port > maxPort {
		return fmt.Errorf("--port %d is not a TCP port (1-65535)", o.Port)
	}
	if o.BasePort == 0 {
		o.BasePort = o.Port + 1
	}
	n := o.MostReplicas()
	if o.BasePort < 1 || o.BasePort+n-1 > maxPort {
		if o.Autoscaled() {
			return fmt.Errorf("--replicas %d:%d: replica ports %d-%d would pass 65535; lower MAX or --base-port", o.Replicas, o.MaxReplicas, o.BasePort, o.BasePort+n-1)
		}
		return fmt.Errorf("replica ports %d-%d are outside 1-65535", o.BasePort, o.BasePort+n-1)
	}
	if o.Port >= o.BasePort && o.Port < o.BasePort+n {
		return fmt.Errorf("--port %d falls among the replica ports %d-%d; choose another --base-port", o.Port, o.BasePort, o.BasePort+n-1)
	}
	return nil
}

// resolvePolicy returns the balancing policy Policy names, least_conn when
// empty, and checks Weights against it.
func (o *ProxyOptions) resolvePolicy() (balancer.Policy, error) {
	if o.Policy == "" {
		o.Policy = "least_conn"
	}
	policy, err := balancer.NewPolicy(o.Policy)
	if err != nil {
		return nil, err
	}
	if len(o.Weights) > 0 && o.Policy != "weighted" {
		return nil, fmt.Errorf("--weights applies only to --policy weighted, not %s", o.Policy)
	}
	for i, w := range o.Weights {
		if w < 1 {
			return nil, fmt.Errorf("--weights: weight %d of replica-%d must be at least 1", w, i+1)
		}
	}
	return policy, nil
}

// Validate reports the first problem with opts that can be found without
// starting anything: bad values and a command that cannot be run.
func Validate(opts Options) error {
	if len(opts.Services) > 0 {
		_, err := newServices(opts)
		return err
	}
	if _, err := opts.resolve(); err != nil {
		return err
	}
	return replica.CheckCommand(opts.Command)
}
