package supervisor

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/internal/control"
)

// TestSettingsCoverOptions: every field of Options is a setting a reload
// compares, or one the process gives rather than the user; so a field
// added later cannot be changed by a reload without anyone deciding how.
func TestSettingsCoverOptions(t *testing.T) {
	covered := map[string]string{}
	flags := map[string]bool{}
	for _, s := range settings {
		if flags[s.flag] {
			t.Errorf("setting %s listed twice", s.flag)
		}
		flags[s.flag] = true
		for _, f := range s.fields {
			if prev, ok := covered[f]; ok {
				t.Errorf("field %s is covered by %s and %s", f, prev, s.flag)
			}
			covered[f] = s.flag
		}
	}
	for _, f := range notSettings {
		covered[f] = "not a setting"
	}
	var walk func(reflect.Type)
	seen := map[string]bool{}
	walk = func(typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[balancer.InflightBounds]() {
				walk(f.Type)
				continue
			}
			seen[f.Name] = true
			if _, ok := covered[f.Name]; !ok {
				t.Errorf("Options.%s is neither a setting a reload compares (settings) nor in notSettings", f.Name)
			}
		}
	}
	walk(reflect.TypeFor[Options]())
	for f := range covered {
		if !seen[f] {
			t.Errorf("%s, in settings or notSettings, is no field of Options", f)
		}
	}
}

func TestDiffOptions(t *testing.T) {
	base := func() Options { o := upDefaults(2); o.Command = []string{"python3", "app.py"}; return o }
	tests := []struct {
		name    string
		change  func(o *Options)
		want    []control.Change
		refused []string
	}{
		{name: "nothing", change: func(*Options) {}},
		{name: "proxy settings, live", change: func(o *Options) {
			o.MaxInflight, o.QueueTimeout, o.Policy = 2, new(time.Minute), "round_robin"
			o.UpstreamTimeout = 2 * time.Minute
		}, want: []control.Change{
			{Setting: "policy", Old: "least_conn", New: "round_robin", Applied: applyLive},
			{Setting: "max-inflight", Old: "auto", New: "2", Applied: applyLive},
			{Setting: "queue-timeout", Old: "auto", New: "1m", Applied: applyLive},
			{Setting: "upstream-timeout", Old: "10m", New: "2m", Applied: applyLive},
		}},
		{name: "fixed back to auto bounds", change: func(o *Options) {
			o.AdaptiveInflight = balancer.InflightBounds{Min: 2, Max: 16}
		}, want: []control.Change{{Setting: "max-inflight", Old: "auto", New: "auto:2-16", Applied: applyLive}}},
		{name: "command and env roll", change: func(o *Options) {
			o.Command = append(o.Command, "--fp16")
			o.Env = []string{"A=1"}
		}, want: []control.Change{
			{Setting: "env", Old: "", New: "A=1", Applied: applyRolling},
			{Setting: "command", Old: "python3 app.py", New: "python3 app.py --fp16", Applied: applyRolling},
		}},
		{name: "a command that joins the same", change: func(o *Options) {
			o.Command = []string{"python3 app.py"}
		}, want: []control.Change{{Setting: "command", Old: "python3 app.py", New: "python3 app.py", Applied: applyRolling}}},
		{name: "replica count", change: func(o *Options) { o.Replicas = 3 },
			want: []control.Change{{Setting: "replicas", Old: "2", New: "3", Applied: applyScale}}},
		{name: "port refused", change: func(o *Options) { o.Port = 9200 }, refused: []string{"port"}},
		{name: "refused with live ones: all refused, named alone", change: func(o *Options) {
			o.Port, o.Host, o.MaxInflight, o.SendTimeout = 9200, "127.0.0.1", 4, time.Hour
		}, refused: []string{"port", "host", "send-timeout"}},
		{name: "autoscale bounds refused", change: func(o *Options) { o.MaxReplicas = 4 }, refused: []string{"replicas"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, n := base(), base()
			tt.change(&n)
			got, err := diffOptions(&old, &n)
			var refused *RefusedError
			switch {
			case tt.refused != nil:
				if !errors.As(err, &refused) || !slices.Equal(refused.Settings, tt.refused) || got != nil {
					t.Errorf("got %v, %v; want %v refused and no change", got, err, tt.refused)
				}
			case err != nil:
				t.Errorf("refused: %v", err)
			case !reflect.DeepEqual(got, tt.want):
				t.Errorf("changes\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestRefusedError(t *testing.T) {
	if got := (&RefusedError{Settings: []string{"port"}}).Error(); got != "port cannot change while the instance runs (restart up to change it); nothing was changed" {
		t.Errorf("one: %q", got)
	}
	if got := (&RefusedError{Settings: []string{"port", "host"}}).Error(); got != "port, host cannot change while the instance runs (restart up to change them); nothing was changed" {
		t.Errorf("two: %q", got)
	}
}

func TestFmtDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		10 * time.Minute: "10m", time.Hour: "1h", 90 * time.Second: "1m30s", time.Second: "1s", 0: "0s",
		1500 * time.Millisecond: "1.5s", time.Hour + time.Minute: "1h1m",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
