package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mattingctl/mattingctl/internal/admin"
	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/replica"
)

// errNoSource is returned by Reload and Set for an instance that cannot
// read its settings again (Options.Source nil: not started by up).
var errNoSource = errors.New("this instance cannot change its settings: it was not started by mattingctl up")

// reloadState is what a reload or set starts from: the config file's
// content and the settings set since it was last read, from which the
// configuration in force was made, and that configuration as given,
// before resolve, which a change is compared with. Guarded by
// Supervisor.reloadMu.
type reloadState struct {
	content []byte
	sets    []string
	raw     Options
	fixed   map[string]string // up's own settings (Source.Fixed)
}

// reloadInfo is what status shows of the changes made: the settings that
// differ from those up started with, by flag, with their values, and the
// last change. Guarded by Supervisor.infoMu.
type reloadInfo struct {
	changed map[string]string
	first   map[string]string // each changed setting's value at start
	at      time.Time
	by      string
}

// Reload reads the config file (-f) again, with up's command line over
// it as at start, and applies what changed: the file is the truth, so a
// setting changed by Set since returns to what the file and command line
// say. It is refused, changing nothing, for an instance started without
// -f, when the file cannot be read or has an error (named with its line),
// or when a setting that cannot change while the instance runs changed.
func (s *Supervisor) Reload(ctx context.Context) (control.ReloadResult, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	defer s.reloading()()
	src := s.cfg().Source
	if src == nil {
		return control.ReloadResult{}, errNoSource
	}
	if src.File == "" {
		return control.ReloadResult{}, fmt.Errorf("instance %s was started without -f: there is no config file to read again; change settings with mattingctl set FLAG=VALUE", s.cfg().Name)
	}
	content, err := os.ReadFile(src.File)
	if err != nil {
		return control.ReloadResult{}, fmt.Errorf("config file: %w; nothing was changed", err)
	}
	res, err := s.reconfigure("reload", func(*reloadState) ([]byte, []string) { return content, nil })
	res.File = src.File
	return res, err
}

// Set applies settings, FLAG=VALUE with up's flag names (and command=...),
// on top of the configuration in force; they last until the next reload,
// which reads the file again, or until up is restarted. It is refused,
// changing nothing, for a value up would refuse or a setting that cannot
// change while the instance runs.
func (s *Supervisor) Set(ctx context.Context, settings []string) (control.ReloadResult, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	defer s.reloading()()
	if s.cfg().Source == nil {
		return control.ReloadResult{}, errNoSource
	}
	named := map[string]bool{}
	for _, kv := range settings {
		named[setKey(kv)] = true
	}
	return s.reconfigure("set", func(st *reloadState) ([]byte, []string) {
		// A setting set again replaces what was set before, list and all.
		kept := slices.DeleteFunc(slices.Clone(st.sets), func(kv string) bool { return named[setKey(kv)] })
		return st.content, append(kept, settings...)
	})
}

// reloading calls OnReload with ReloadStarted and returns what calls it
// with ReloadDone: every reload and set is bracketed, refused or not, so
// that a service manager that sent SIGHUP hears that it ended. Called with
// reloadMu held, so that brackets never overlap.
func (s *Supervisor) reloading() (done func()) {
	hook := s.cfg().OnReload
	if hook == nil {
		return func() {}
	}
	hook(ReloadStarted)
	return func() { hook(ReloadDone) }
}

// setKey is the flag name of a FLAG=VALUE setting.
func setKey(kv string) string {
	k, _, _ := strings.Cut(kv, "=")
	return strings.TrimPrefix(k, "--")
}

// reconfigure makes the configuration that next gives (the config file's
// content and the settings over it, from the state in force) the one in
// force, after checking all of it: the proxy's settings live, a changed
// replica count by a scale, the replicas' settings by a rolling restart.
// by names the caller, for the log and status. Reloads and sets run one
// at a time, each to its end, rolling restart included: the caller holds
// reloadMu. The scale and the rolling restart run under the instance's
// context, not the caller's: a client that gives up waiting does not
// leave the replicas half rolled to settings recorded as in force.
func (s *Supervisor) reconfigure(by string, next func(*reloadState) ([]byte, []string)) (control.ReloadResult, error) {
	content, sets := next(&s.reload)
	old := s.cfg()
	res := control.ReloadResult{Name: old.Name, Changes: []control.Change{}}
	if s.ctx.Err() != nil {
		return res, errStopping
	}
	c, raw, changes, err := s.checkChange(content, sets)
	if err != nil {
		return res, err
	}
	res.Changes = changes
	s.reload.content, s.reload.sets, s.reload.raw = content, sets, raw
	if len(changes) == 0 {
		s.log.Info(by + ": no setting changed")
		return res, nil
	}

	policy := c.policy
	if c.Policy == old.Policy {
		policy = nil // keep the policy's state (a round robin's turn)
	}
	if err := s.bal.Reconfigure(c.Limits, policy); err != nil {
		// Every setting the balancer cannot change is refused above.
		s.log.Error("proxy settings not changed", "error", err)
	}
	s.opts.Store(c)
	if !slices.Equal(c.Weights, old.Weights) {
		s.applyWeights(c)
	}
	s.recordChanges(changes, by)
	for _, ch := range changes {
		s.log.Info(by+": setting changed", "setting", ch.Setting, "old", ch.Old, "new", ch.New, "applied", ch.Applied)
	}
	s.event("", admin.EventReload, "%s: %s", by, summarize(changes))
	if needs(changes, applyScale) {
		sr, err := s.Scale(s.ctx, c.Replicas)
		if err != nil {
			return res, fmt.Errorf("settings applied, but the scale to %d replicas failed: %w", c.Replicas, err)
		}
		res.Scale = &sr
	}
	if needs(changes, applyRolling) {
		rr, err := s.RollingRestart(s.ctx)
		if err != nil {
			return res, fmt.Errorf("settings applied, but the rolling restart did not start: %w; run mattingctl restart", err)
		}
		res.Restart = &rr
	}
	return res, nil
}

// checkChange reads the configuration that content and sets give, and
// checks it against the one in force, changing nothing: it returns the
// new configuration resolved (derived values kept from the one in
// force), as given, and the changes, or why it cannot be made. The
// caller holds reloadMu.
func (s *Supervisor) checkChange(content []byte, sets []string) (*config, Options, []control.Change, error) {
	old := s.cfg()
	raw, fixed, err := old.Source.Load(content, sets)
	if err != nil {
		return nil, raw, nil, fmt.Errorf("%w; nothing was changed", err)
	}
	if len(raw.Services) > 0 {
		return nil, raw, nil, errors.New("the file now lists services: an instance of one cannot become one of several while it runs (down, then up -f); nothing was changed")
	}
	keepRuntime(&raw, &old.Options)
	changes, err := diffOptions(&s.reload.raw, &raw)
	if ferr := diffFixed(s.reload.fixed, fixed); ferr != nil {
		err = joinRefused(err, ferr)
	}
	if err != nil {
		return nil, raw, nil, err
	}
	c, err := raw.resolve()
	if err == nil && !slices.Equal(raw.Command, s.reload.raw.Command) {
		err = replica.CheckCommand(raw.Command)
	}
	if err == nil {
		err = checkInflightPlan(c, old)
	}
	if err != nil {
		return nil, raw, nil, fmt.Errorf("%w; nothing was changed", err)
	}
	keepDerived(c, old)
	return c, raw, changes, nil
}

// checkInflightPlan refuses a cap on requests in flight per replica above
// the one the open-file budget was planned for at start (connections to
// the replicas), which a running instance keeps.
func checkInflightPlan(c, old *config) error {
	planned, now := old.MostInflight(), c.MostInflight()
	if planned == 0 || (now != 0 && now <= planned) {
		return nil
	}
	return fmt.Errorf("max-inflight %s: more in flight per replica than the %d the open-file budget was planned for at start; restart up to raise it",
		fmtInflight(c.MaxInflight, c.AdaptiveInflight), planned)
}

// keepRuntime gives o, as Source.Load made it from up's flags, what the
// running process gave the instance rather than the user.
func keepRuntime(o, running *Options) {
	o.Name, o.StateDir = running.Name, running.StateDir
	o.Stdout, o.Stderr, o.Logger = running.Stdout, running.Stderr, running.Logger
	o.Backoff, o.Reaper, o.MemAvailable = running.Backoff, running.Reaper, running.MemAvailable
	o.ReloadOptions = running.ReloadOptions
	o.OnReady, o.OnStopping = running.OnReady, running.OnStopping
}

// keepDerived gives c what old derived at start from settings that cannot
// change (they are equal as given, which diffOptions checked): the
// generated admin token, and the open-file budget, which a new plan could
// share out differently while the listener keeps its cap.
func keepDerived(c, old *config) {
	c.BasePort, c.Admin, c.AdminToken, c.BufferDir = old.BasePort, old.Admin, old.AdminToken, old.BufferDir
	c.MaxConns, c.MaxUpgraded, c.budget = old.MaxConns, old.MaxUpgraded, old.budget
	c.cert = old.cert // re-read by a rolling restart, as before
}

// diffFixed returns a *RefusedError naming up's own settings that differ.
func diffFixed(old, new map[string]string) error {
	var refused []string
	for k, v := range new {
		if old[k] != v {
			refused = append(refused, k)
		}
	}
	if len(refused) == 0 {
		return nil
	}
	slices.Sort(refused)
	return &RefusedError{Settings: refused}
}

// joinRefused returns one *RefusedError naming the settings of both a and
// b, either of which may be nil.
func joinRefused(a, b error) error {
	var names []string
	for _, err := range []error{a, b} {
		var r *RefusedError
		if errors.As(err, &r) {
			names = append(names, r.Settings...)
		}
	}
	return &RefusedError{Settings: names}
}

// applyWeights gives every running process its replica's weight under c.
func (s *Supervisor) applyWeights(c *config) {
	for _, sl := range s.snapshot() {
		sl.mu.Lock()
		for _, inc := range []*incarnation{sl.cur, sl.prev} {
			if inc != nil {
				inc.be.SetWeight(c.weight(sl.id))
			}
		}
		sl.mu.Unlock()
	}
}

// weight returns replica id's weight: its entry in Weights, or 1 past the
// list.
func (c *config) weight(id int) int {
	if id <= len(c.Weights) {
		return c.Weights[id-1]
	}
	return 1
}

// recordChanges notes changes for status: each setting's value now, or
// none once it is back to what up started with.
func (s *Supervisor) recordChanges(changes []control.Change, by string) {
	s.infoMu.Lock()
	defer s.infoMu.Unlock()
	in := &s.info
	if in.changed == nil {
		in.changed, in.first = map[string]string{}, map[string]string{}
	}
	for _, ch := range changes {
		if _, ok := in.first[ch.Setting]; !ok {
			in.first[ch.Setting] = ch.Old
		}
		if in.first[ch.Setting] == ch.New {
			delete(in.changed, ch.Setting)
		} else {
			in.changed[ch.Setting] = ch.New
		}
	}
	in.at, in.by = time.Now(), by
}

// summarize writes changes on one line, as the CLI prints them.
func summarize(changes []control.Change) string {
	parts := make([]string, len(changes))
	for i, ch := range changes {
		parts[i] = ch.Setting + " " + ch.Old + " → " + ch.New
		if ch.Setting == "command" {
			parts[i] = "command changed"
		}
	}
	return strings.Join(parts, "; ")
}
