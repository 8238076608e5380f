package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mattingctl/mattingctl/internal/control"
)

// reloadOptions are `mattingctl reload`'s, and `mattingctl set`'s with
// Settings.
type reloadOptions struct {
	Out      io.Writer
	Client   func() (instanceClient, error)
	Timeout  time.Duration
	Settings []string // set's FLAG=VALUE; nil for reload
}

// changeTimeout bounds a reload's or set's wait, rolling restart
// included, as restart's.
const changeTimeout = 30 * time.Minute

func newReloadCmd(f *factory, g *globalOptions, runF func(*reloadOptions) error) *cobra.Command {
	opts := &reloadOptions{Out: f.Out, Client: clientFor(f, g)}
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Read up's config file (-f) again and apply what changed, live (as SIGHUP to up)",
		Long: `Read the config file the instance was started with (up -f FILE) again, with
up's command line over it as at start, and apply what changed: the proxy's
settings live, a changed replica count by a scale, a changed command,
environment, placement, health check or warm-up by a rolling restart. Each
setting changed is printed, old -> new. Settings changed by mattingctl set
return to what the file and the command line say.

A setting that cannot change while the instance runs (the ports and
addresses, the budgets planned at start) refuses the whole reload, as does a
file with an error: nothing is changed. An instance started without -f has
no file to read: change its settings with mattingctl set.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return reloadRun(opts)
		},
	}
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", changeTimeout, "how long to wait for the changes to be applied, rolling restart included")
	addServiceFlag(cmd, &opts.Client)
	return cmd
}

func newSetCmd(f *factory, g *globalOptions, runF func(*reloadOptions) error) *cobra.Command {
	opts := &reloadOptions{Out: f.Out, Client: clientFor(f, g)}
	cmd := &cobra.Command{
		Use:   "set FLAG=VALUE...",
		Short: "Change up's settings on the running instance, live: set max-inflight=2 policy=round_robin",
		Long: `Change settings of the running instance, named as up's flags (and command),
and apply them as reload does: the proxy's settings live, the replica count
by a scale, the replicas' settings by a rolling restart. Each setting
changed is printed, old -> new. They last until the next reload, which reads
the config file again, or until up is restarted: put them in the file to
keep them.

  mattingctl set max-inflight=2 queue-timeout=1m policy=round_robin
  mattingctl set env=OMP_NUM_THREADS=2 env=MODEL=large   # a list: replaced
  mattingctl set command="python3 app.py --fp16"          # rolling restart

A setting that cannot change while the instance runs (port, host, admin,
the budgets planned at start) refuses the whole set: nothing is changed.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, a := range args {
				if k, _, ok := strings.Cut(a, "="); !ok || strings.TrimPrefix(k, "--") == "" {
					return fmt.Errorf("%q is not FLAG=VALUE, e.g. max-inflight=8", a)
				}
			}
			opts.Settings = args
			if runF != nil {
				return runF(opts)
			}
			return reloadRun(opts)
		},
	}
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", changeTimeout, "how long to wait for the changes to be applied, rolling restart included")
	addServiceFlag(cmd, &opts.Client)
	// A value may begin with a dash (env=-x is not a flag of set's).
	cmd.Flags().SetInterspersed(false)
	return cmd
}

func reloadRun(opts *reloadOptions) error {
	c, err := opts.Client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	var res control.ReloadResult
	if opts.Settings != nil {
		res, err = c.Set(ctx, opts.Settings)
	} else {
		res, err = c.Reload(ctx)
	}
	if err != nil {
		return err
	}
	if err := writeReload(opts.Out, res); err != nil {
		return err
	}
	if r := res.Restart; r != nil && r.Error != "" {
		return errors.New("settings applied, but the rolling restart stopped: " + r.Error + "; processes started from now on run the new settings")
	}
	if s := res.Scale; s != nil && len(s.Errors) > 0 {
		return errors.New("settings applied, but the scale failed: " + strings.Join(s.Errors, "; "))
	}
	return nil
}

// writeReload prints a reload's or set's changes, one line per setting,
// then the scale and rolling restart they made.
func writeReload(w io.Writer, res control.ReloadResult) error {
	var b strings.Builder
	if len(res.Changes) == 0 {
		fmt.Fprintf(&b, "instance %s: no setting changed\n", res.Name)
		_, err := io.WriteString(w, b.String())
		return err
	}
	for _, ch := range res.Changes {
		line := ch.Setting + " " + orNone(ch.Old) + " → " + orNone(ch.New)
		if ch.Setting == "command" {
			line = "command changed"
		}
		if ch.Applied != control.AppliedLive {
			line += ": " + ch.Applied
		}
		b.WriteString(line + "\n")
		if ch.Setting == "command" {
			fmt.Fprintf(&b, "  was: %s\n  now: %s\n", ch.Old, ch.New)
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	if res.Scale != nil {
		if err := writeScale(w, *res.Scale); err != nil {
			return err
		}
	}
	if res.Restart != nil {
		return writeRestart(w, *res.Restart)
	}
	return nil
}

// orNone shows an empty value.
func orNone(v string) string {
	if v == "" {
		return `""`
	}
	return v
}
