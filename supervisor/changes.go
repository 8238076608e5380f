package supervisor

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/internal/bytesize"
	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/replica"
)

// A running instance's settings change by `mattingctl reload` (the -f
// file read again), `mattingctl set FLAG=VALUE` and SIGHUP (reload.go).
// Each of up's settings is applied in one of four ways, by what holds it:
//
//   - live: read where it is used, from the configuration in force (the
//     proxy's limits, its policy and weights; the supervisor's timeouts),
//     so a new value is in force for what starts from then on;
//   - by a rolling restart: decided when a replica's process starts (its
//     command, environment, CPUs, GPUs, health checks, warm-up), so every
//     replica is given a new process, one at a time, with no drop;
//   - by a scale: the replica count;
//   - refused: fixed at start (the ports and addresses bound, the
//     budgets planned from the open-file limit, what the proxy's listener
//     and buffers were made with). A change of one refuses the whole
//     change, naming it: restart up to change it.

// How a setting is applied (setting.how).
const (
	applyLive    = control.AppliedLive
	applyRolling = control.AppliedRolling
	applyScale   = control.AppliedScale
	applyNever   = "refused"
)

// setting is one of up's settings as a reload sees it: its flag name, the
// Options fields it covers (for the test that every field is covered),
// how a change of it is applied, and its value as up's flag takes it.
type setting struct {
	flag   string
	fields []string
	how    string
	value  func(o *Options) string
}

// settings are up's settings, in the order of `up --help`. Every field of
// Options is either here or in notSettings (changes_test.go checks).
var settings = []setting{
	{"replicas", []string{"Replicas", "MaxReplicas"}, applyScale, func(o *Options) string {
		if o.Autoscaled() {
			return fmt.Sprintf("%d:%d", o.Replicas, o.MaxReplicas)
		}
		return strconv.Itoa(o.Replicas)
	}},
	{"scale-up-delay", []string{"ScaleUpDelay"}, applyLive, func(o *Options) string { return fmtDuration(o.ScaleUpDelay) }},
	{"scale-down-delay", []string{"ScaleDownDelay"}, applyLive, func(o *Options) string { return fmtDuration(o.ScaleDownDelay) }},
	{"base-port", []string{"BasePort"}, applyNever, func(o *Options) string { return fmtAuto(o.BasePort) }},
	{"env", []string{"Env"}, applyRolling, func(o *Options) string { return fmtList(o.Env) }},
	{"start-concurrency", []string{"StartConcurrency"}, applyNever, func(o *Options) string { return strconv.Itoa(o.StartConcurrency) }},
	{"ready-timeout", []string{"ReadyTimeout"}, applyLive, func(o *Options) string { return fmtDuration(o.ReadyTimeout) }},
	{"stop-timeout", []string{"StopTimeout"}, applyLive, func(o *Options) string { return fmtDuration(o.StopTimeout) }},
	{"warmup", []string{"Warmup"}, applyRolling, func(o *Options) string { return o.Warmup }},
	{"warmup-count", []string{"WarmupCount"}, applyRolling, func(o *Options) string { return strconv.Itoa(o.WarmupCount) }},
	{"port", []string{"Port"}, applyNever, func(o *Options) string { return strconv.Itoa(o.Port) }},
	{"host", []string{"Host"}, applyNever, func(o *Options) string { return o.Host }},
	{"policy", []string{"Policy"}, applyLive, func(o *Options) string { return o.Policy }},
	{"weights", []string{"Weights"}, applyLive, func(o *Options) string { return fmtInts(o.Weights) }},
	{"max-inflight", []string{"MaxInflight", "AdaptiveInflight"}, applyLive, func(o *Options) string {
		return fmtInflight(o.MaxInflight, o.AdaptiveInflight)
	}},
	{"queue", []string{"Queue"}, applyLive, func(o *Options) string { return strconv.Itoa(o.Queue) }},
	{"queue-timeout", []string{"QueueTimeout"}, applyLive, func(o *Options) string {
		if o.QueueTimeout == nil {
			return "auto"
		}
		return fmtDuration(*o.QueueTimeout)
	}},
	{"retries", []string{"Retries"}, applyLive, func(o *Options) string { return strconv.Itoa(o.Retries) }},
	{"quarantine", []string{"Quarantine"}, applyNever, func(o *Options) string { return fmtDuration(o.Quarantine) }},
	// The four --batch-* flags are one field, Batch, listed at the first.
	{"batch-path", []string{"Batch"}, applyLive, func(o *Options) string { return o.Batch.Path }},
	{"batch-endpoint", nil, applyLive, func(o *Options) string { return o.Batch.Endpoint }},
	{"batch-max", nil, applyLive, func(o *Options) string { return strconv.Itoa(o.Batch.Max) }},
	{"batch-wait", nil, applyLive, func(o *Options) string { return fmtDuration(o.Batch.Wait) }},
	{"connect-timeout", []string{"ConnectTimeout"}, applyLive, func(o *Options) string { return fmtDuration(o.ConnectTimeout) }},
	{"upstream-timeout", []string{"UpstreamTimeout"}, applyLive, func(o *Options) string { return fmtDuration(o.UpstreamTimeout) }},
	{"client-timeout", []string{"ClientTimeout"}, applyNever, func(o *Options) string { return fmtDuration(o.ClientTimeout) }},
	{"send-timeout", []string{"SendTimeout"}, applyNever, func(o *Options) string { return fmtDuration(o.SendTimeout) }},
	{"max-body", []string{"MaxBody"}, applyLive, func(o *Options) string { return bytesize.Format(o.MaxBody) }},
	{"max-conns", []string{"MaxConns"}, applyNever, func(o *Options) string { return fmtAuto(o.MaxConns) }},
	{"max-buffer", []string{"MaxBuffer"}, applyNever, func(o *Options) string { return bytesize.Format(o.MaxBuffer) }},
	{"max-disk-buffer", []string{"MaxDiskBuffer"}, applyNever, func(o *Options) string { return bytesize.Format(o.MaxDiskBuffer) }},
	{"max-client-uploads", []string{"MaxClientUploads"}, applyNever, func(o *Options) string { return strconv.Itoa(o.MaxClientUploads) }},
	{"max-client-buffer", []string{"MaxClientBuffer"}, applyNever, func(o *Options) string {
		if o.MaxClientBuffer == nil {
			return "auto"
		}
		return bytesize.Format(*o.MaxClientBuffer)
	}},
	{"min-upload-rate", []string{"MinUploadRate"}, applyLive, func(o *Options) string { return bytesize.Format(o.MinUploadRate) }},
	{"upload-grace", []string{"UploadGrace"}, applyLive, func(o *Options) string { return fmtDuration(o.UploadGrace) }},
	{"buffer-dir", []string{"BufferDir"}, applyNever, func(o *Options) string { return fmtAutoString(o.BufferDir) }},
	{"response-buffer", []string{"ResponseBuffer"}, applyLive, func(o *Options) string { return bytesize.Format(o.ResponseBuffer) }},
	{"max-upgraded", []string{"MaxUpgraded"}, applyNever, func(o *Options) string { return fmtAuto(o.MaxUpgraded) }},
	{"health", []string{"Health"}, applyRolling, func(o *Options) string { return o.Health }},
	{"health-interval", []string{"HealthInterval"}, applyRolling, func(o *Options) string { return fmtDuration(o.HealthInterval) }},
	{"health-timeout", []string{"HealthTimeout"}, applyLive, func(o *Options) string { return fmtDuration(o.HealthTimeout) }},
	{"unhealthy-after", []string{"UnhealthyAfter"}, applyLive, func(o *Options) string { return strconv.Itoa(o.UnhealthyAfter) }},
	{"restart-unhealthy-after", []string{"RestartUnhealthyAfter"}, applyLive, func(o *Options) string { return fmtDuration(o.RestartUnhealthyAfter) }},
	{"min-ready", []string{"MinReady"}, applyLive, func(o *Options) string { return strconv.Itoa(o.MinReady) }},
	{"drain-delay", []string{"DrainDelay"}, applyLive, func(o *Options) string { return fmtDuration(o.DrainDelay) }},
	{"max-requests", []string{"MaxRequests"}, applyRolling, func(o *Options) string { return strconv.Itoa(o.MaxRequests) }},
	{"max-requests-jitter", []string{"MaxRequestsJitter"}, applyRolling, func(o *Options) string { return strconv.Itoa(o.MaxRequestsJitter) }},
	{"max-memory", []string{"MaxMemory"}, applyLive, func(o *Options) string { return bytesize.Format(o.MaxMemory) }},
	{"cpus", []string{"CPUs"}, applyRolling, func(o *Options) string { return fmtCPUSets(o.CPUs) }},
	{"gpus", []string{"GPUs"}, applyRolling, func(o *Options) string { return strings.Join(o.GPUs, ",") }},
	{"upstream-protocol", []string{"UpstreamProtocol"}, applyNever, func(o *Options) string { return o.UpstreamProtocol }},
	{"tls-cert", []string{"TLSCert"}, applyNever, func(o *Options) string { return o.TLSCert }},
	{"tls-key", []string{"TLSKey"}, applyNever, func(o *Options) string { return o.TLSKey }},
	{"access-log", []string{"AccessLog"}, applyNever, func(o *Options) string { return o.AccessLog }},
	{"access-log-format", []string{"AccessLogFormat"}, applyNever, func(o *Options) string { return o.AccessLogFormat }},
	{"output-rate", []string{"OutputRate"}, applyNever, func(o *Options) string { return bytesize.Format(o.OutputRate) }},
	{"admin", []string{"Admin"}, applyNever, func(o *Options) string { return fmtAutoString(o.Admin) }},
	{"admin-token", []string{"AdminToken"}, applyNever, func(o *Options) string {
		if o.AdminToken == "" {
			return "auto"
		}
		return "(a token)" // never shown
	}},
	{"admin-max-conns", []string{"AdminMaxConns"}, applyNever, func(o *Options) string { return strconv.Itoa(o.AdminMaxConns) }},
	{"name", []string{"Name"}, applyNever, func(o *Options) string { return o.Name }},
	{"command", []string{"Command"}, applyRolling, func(o *Options) string { return strings.Join(o.Command, " ") }},
}

// notSettings are the Options fields that are no setting of up's: what
// the process gives the supervisor, not the user; Services, the config
// file's list, which a reload refuses to change (services.go); and
// shareOf, which follows from it.
var notSettings = []string{"StateDir", "Stdout", "Stderr", "Logger", "Backoff", "Reaper", "MemAvailable", "Source", "OnReload", "OnReady", "OnStopping", "Services", "shareOf"}

// RefusedError is a change that cannot be made while the instance runs:
// nothing of it was made.
type RefusedError struct {
	// Settings are the flag names of the settings that cannot change.
	Settings []string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s cannot change while the instance runs (restart up to change %s); nothing was changed",
		strings.Join(e.Settings, ", "), map[bool]string{true: "it", false: "them"}[len(e.Settings) == 1])
}

// diffOptions returns the settings that differ between old and new, each
// with how it is applied, in up's flag order; or a *RefusedError naming
// every one of them that cannot change while the instance runs. Both are
// Options as given, before resolve fills in what their zeros stand for,
// so that a value derived at start (a generated token, a port) is not
// taken for a change. A replica count changes by a scale only when
// neither side autoscales: the autoscaler's bounds and delays are read
// when it starts.
func diffOptions(old, new *Options) ([]control.Change, error) {
	var changes []control.Change
	var refused []string
	for _, s := range settings {
		o, n := s.value(old), s.value(new)
		if o == n && (s.flag != "command" || slices.Equal(old.Command, new.Command)) {
			continue
		}
		how := s.how
		if (old.Autoscaled() || new.Autoscaled()) && (s.flag == "replicas" || s.flag == "scale-up-delay" || s.flag == "scale-down-delay") {
			how = applyNever
		}
		if how == applyNever {
			refused = append(refused, s.flag)
			continue
		}
		changes = append(changes, control.Change{Setting: s.flag, Old: o, New: n, Applied: how})
	}
	if len(refused) > 0 {
		return nil, &RefusedError{Settings: refused}
	}
	return changes, nil
}

// needs reports whether any of changes is applied how.
func needs(changes []control.Change, how string) bool {
	return slices.ContainsFunc(changes, func(c control.Change) bool { return c.Applied == how })
}

// fmtDuration writes d as up's flags take it, without the zero units
// that time.Duration.String adds (10m, not 10m0s).
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// fmtInflight writes a --max-inflight value.
func fmtInflight(fixed int, adaptive balancer.InflightBounds) string {
	switch {
	case fixed > 0:
		return strconv.Itoa(fixed)
	case adaptive == balancer.DefaultAdaptiveInflight:
		return "auto"
	case adaptive.Max > 0:
		return fmt.Sprintf("auto:%d-%d", adaptive.Min, adaptive.Max)
	}
	return "0"
}

func fmtAuto(n int) string {
	if n == 0 {
		return "auto"
	}
	return strconv.Itoa(n)
}

func fmtAutoString(s string) string {
	if s == "" {
		return "auto"
	}
	return s
}

func fmtInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// fmtList writes a repeatable flag's values; a value with a space is
// quoted, so that two lists that differ never read the same.
func fmtList(vs []string) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = v
		if strings.ContainsAny(v, " ,\"") || v == "" {
			s[i] = strconv.Quote(v)
		}
	}
	return strings.Join(s, ",")
}

func fmtCPUSets(sets [][]int) string {
	s := make([]string, len(sets))
	for i, set := range sets {
		s[i] = strings.ReplaceAll(replica.FormatCPUs(set), ",", "+")
	}
	return strings.Join(s, ",")
}

// SettingNames returns the flag names of the settings that a reload
// compares, in up's flag order.
func SettingNames() []string {
	names := make([]string, len(settings))
	for i, s := range settings {
		names[i] = s.flag
	}
	return names
}
