package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/unitfile"
	"github.com/mattingctl/mattingctl/supervisor"
)

// systemdUnitOptions are what `mattingctl systemd-unit` writes a unit of.
type systemdUnitOptions struct {
	Out io.Writer
	// Up holds up's flags as resolved (the config file applied), for the
	// timeouts they imply.
	Up *upOptions
	// UpArgs are up's flags as the command line gave them, in order, each
	// as --NAME=VALUE, for ExecStart=.
	UpArgs []string
	// Name is the instance's --name.
	Name string
	// Self is this binary's absolute path, ExecStart='s program.
	Self string
	// Dir is WorkingDirectory=: the current directory.
	Dir string
	// User is User=; empty or root means none (root).
	User string
	// Watchdog is WatchdogSec=; 0 means none.
	Watchdog time.Duration
}

// unitStateDir is MATTINGCTL_HOME in the unit: a runtime directory that
// systemd makes for the service's user at each start and keeps across
// restarts, the same for every unit, so that `MATTINGCTL_HOME=/run/mattingctl
// mattingctl status --name NAME` finds any of them.
const unitStateDir = "/run/mattingctl"

// unitStopMargin is added to up's own stop bound for TimeoutStopSec=:
// time to kill what stayed past --stop-timeout and sweep the state.
const unitStopMargin = 15 * time.Second

// unitStartMargin is added to up's own start bound for TimeoutStartSec=.
const unitStartMargin = 30 * time.Second

func newSystemdUnitCmd(f *factory, g *globalOptions, runF func(*systemdUnitOptions) error) *cobra.Command {
	up := &upOptions{Options: supervisor.DefaultOptions(), LogLevel: "info", LogFormat: "text"}
	opts := &systemdUnitOptions{Out: f.Out, Up: up, Self: f.Self, Watchdog: 30 * time.Second}
	cmd := &cobra.Command{
		Use:   "systemd-unit [flags] [up flags] -- COMMAND [ARG...]",
		Short: "Print a systemd unit that runs `mattingctl up` with these flags as a service",
		Long: `Print a systemd service unit that runs mattingctl up, with the up flags and
command given here, from the current directory, as the current user:

  mattingctl systemd-unit -r 4 -- python3 app.py | sudo tee /etc/systemd/system/matting.service
  sudo systemctl daemon-reload
  sudo systemctl enable --now matting

The unit is Type=notify: systemd counts it started once every replica is
ready, and restarts it if it fails or stops answering its watchdog.
COMMAND's program is written with the path $PATH finds now (a service's
PATH is systemd's). The instance's state directory is /run/mattingctl:
  MATTINGCTL_HOME=/run/mattingctl mattingctl status`,
		Args: cobra.ArbitraryArgs,
		// Parsed by systemdUnitParse: ExecStart= passes up's flags on as
		// the command line wrote them.
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := systemdUnitParse(cmd, opts, args); err != nil {
				return err
			}
			if help, _ := cmd.Flags().GetBool("help"); help {
				return cmd.Help()
			}
			opts.Name = g.Name
			if runF != nil {
				return runF(opts)
			}
			return systemdUnitRun(opts)
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	inGroup(fl, headingUnit, func() {
		fl.StringVar(&opts.User, "user", opts.User, "User= of the service, or root (empty: the current user)")
		fl.DurationVar(&opts.Watchdog, "watchdog", opts.Watchdog, "WatchdogSec=: systemd restarts the service when up's supervisor does not answer for this long (0: off)")
	})
	addUpFlags(fl, up)
	cmd.SetUsageFunc(groupedUsage)
	return cmd
}

// systemdUnitOwn are systemd-unit's own flags: they do not go to up.
var systemdUnitOwn = map[string]bool{"user": true, "watchdog": true, "help": true}

// systemdUnitParse parses args as up does (flags, then the command; the
// config file under the flags), recording up's flags as given.
func systemdUnitParse(cmd *cobra.Command, opts *systemdUnitOptions, args []string) error {
	fl := cmd.Flags()
	var refused error // a flag that cannot go in a unit: the whole message
	err := fl.ParseAll(args, func(f *pflag.Flag, value string) error {
		if err := fl.Set(f.Name, value); err != nil {
			return err
		}
		switch {
		case f.Name == "detach":
			refused = errUnitDetach
			return refused
		case f.Name == "admin-token" && value != auto:
			refused = errors.New("--admin-token cannot go in a unit: unit files are readable by every user; leave it auto (the generated token is kept in the state directory, mode 0600) or put it in the -f file")
			return refused
		case f.Name == "name" || systemdUnitOwn[f.Name]:
		case f.Name == "file":
			abs, err := filepath.Abs(value)
			if err != nil {
				return fmt.Errorf("--file %s: %w", value, err)
			}
			opts.UpArgs = append(opts.UpArgs, "--file="+abs)
		default:
			opts.UpArgs = append(opts.UpArgs, "--"+f.Name+"="+value)
		}
		return nil
	})
	if refused != nil {
		return refused
	}
	if err != nil {
		return fmt.Errorf("%w (mattingctl systemd-unit --help)", err)
	}
	up := opts.Up
	up.Command = fl.Args()
	if up.File != "" {
		if err := applyConfig(cmd, up); err != nil {
			return err
		}
		if err := applyServices(up); err != nil {
			return err
		}
		if up.Detach {
			return fmt.Errorf("%s: detach: %w", up.File, errUnitDetach)
		}
	}
	return nil
}

var errUnitDetach = errors.New("-d cannot go in a unit: systemd runs `mattingctl up` in the foreground and watches it; remove -d")

func systemdUnitRun(opts *systemdUnitOptions) error {
	up := opts.Up
	up.Name = opts.Name
	if err := supervisor.Validate(up.Options); err != nil {
		return err
	}
	command := append([]string(nil), up.Command...)
	// Services' commands stay in the file, found from the unit's working
	// directory and systemd's PATH.
	if len(command) > 0 && !strings.Contains(command[0], "/") {
		// Validate found it in $PATH; the service's PATH is systemd's.
		p, err := exec.LookPath(command[0])
		if err != nil {
			return fmt.Errorf("command %q: %w", command[0], err)
		}
		if command[0], err = filepath.Abs(p); err != nil {
			return err
		}
	}
	if opts.User == "" {
		u, err := user.Current()
		if err != nil {
			return fmt.Errorf("the current user, for User=: %w (name one with --user)", err)
		}
		opts.User = u.Username
	}
	if opts.Self == "" {
		return errors.New("cannot find the mattingctl binary's path for ExecStart=")
	}
	if opts.Dir == "" {
		d, err := os.Getwd()
		if err != nil {
			return fmt.Errorf("the current directory, for WorkingDirectory=: %w", err)
		}
		opts.Dir = d
	}
	sections, err := systemdUnit(opts, command)
	if err != nil {
		return err
	}
	return unitfile.Write(opts.Out, systemdUnitHeader(opts), sections)
}

// systemdUnitHeader is the comment at the top: how the unit was made and
// how to install it.
func systemdUnitHeader(opts *systemdUnitOptions) []string {
	unit := "matting"
	if opts.Name != control.DefaultName {
		unit = opts.Name
	}
	return []string{
		"Written by mattingctl systemd-unit. Install it with:",
		"  ... | sudo tee /etc/systemd/system/" + unit + ".service",
		"  sudo systemctl daemon-reload && sudo systemctl enable --now " + unit,
		"Reach the instance as " + unitUser(opts.User) + ": MATTINGCTL_HOME=" + unitStateDir + " mattingctl status --name " + opts.Name,
	}
}

// unitUser names the service's user: root when User= is none.
func unitUser(u string) string {
	if u == "" {
		return "root"
	}
	return u
}

// systemdUnit is the unit's sections for opts, COMMAND being command.
func systemdUnit(opts *systemdUnitOptions, command []string) ([]unitfile.Section, error) {
	up := opts.Up
	argv := append([]string{opts.Self}, "--name="+opts.Name, "up")
	argv = append(argv, opts.UpArgs...)
	if len(command) > 0 {
		argv = append(append(argv, "--"), command...)
	}
	var bad error
	value := func(s string) string {
		v, err := unitfile.Value(s)
		if err != nil && bad == nil {
			bad = err
		}
		return v
	}
	service := []unitfile.Entry{
		{Comment: []string{"up speaks sd_notify: the service is started once every replica is ready."}, Key: "Type", Value: "notify"},
		{Key: "NotifyAccess", Value: "main"},
		{Key: "ExecStart", Value: unitfile.Command(argv)},
		{Comment: []string{
			"systemctl reload sends up SIGHUP. On systemd 253 or later, Type=notify-reload",
			"without ExecReload= makes systemctl reload wait until up has reloaded.",
		}, Key: "ExecReload", Value: "/bin/kill -HUP $MAINPID"},
		{Key: "WorkingDirectory", Value: value(opts.Dir)},
	}
	if opts.User != "" && opts.User != "root" {
		service = append(service, unitfile.Entry{Key: "User", Value: value(opts.User)})
	}
	service = append(service,
		unitfile.Entry{Comment: []string{
			"The state directory (control socket, admin token), made at each start",
			"for the service's user and kept across restarts.",
		}, Key: "Environment", Value: unitfile.Word("MATTINGCTL_HOME=" + unitStateDir)},
		unitfile.Entry{Key: "RuntimeDirectory", Value: strings.TrimPrefix(unitStateDir, "/run/")},
		unitfile.Entry{Key: "RuntimeDirectoryMode", Value: "0700"},
		unitfile.Entry{Key: "RuntimeDirectoryPreserve", Value: "yes"},
		unitfile.Entry{Comment: []string{
			"mixed: SIGTERM reaches mattingctl alone, which drains the proxy and stops",
			"its replicas within --stop-timeout, in order; systemd's SIGKILL after",
			"TimeoutStopSec, or once mattingctl has exited, reaches everything left",
			"in the control group. (control-group would SIGTERM the replicas at the",
			"same moment as mattingctl, failing the requests in flight.)",
		}, Key: "KillMode", Value: "mixed"},
		unitfile.Entry{Comment: []string{
			"mattingctl puts each replica in a cgroup of its own, below the service's,",
			"so that nothing a replica starts outlives it.",
		}, Key: "Delegate", Value: "yes"},
		unitfile.Entry{Comment: []string{
			"The start: --ready-timeout for each wave of --start-concurrency replicas",
			"(and their warm-up), plus a margin; up fails on its own before.",
		}, Key: "TimeoutStartSec", Value: unitSeconds(unitStartTimeout(up.Options))},
		unitfile.Entry{Comment: []string{"--drain-delay and --stop-timeout, plus a margin."},
			Key: "TimeoutStopSec", Value: unitSeconds(up.DrainDelay + up.StopTimeout + unitStopMargin)},
		unitfile.Entry{Key: "Restart", Value: "on-failure"},
		unitfile.Entry{Key: "RestartSec", Value: "5s"},
	)
	if opts.Watchdog > 0 {
		service = append(service, unitfile.Entry{
			Comment: []string{
				"up pings at half of it while its supervisor answers; past it, systemd",
				"sends SIGABRT (a stack dump in the journal), then restarts the service.",
			},
			Key: "WatchdogSec", Value: unitSeconds(opts.Watchdog),
		})
	}
	if bad != nil {
		return nil, bad
	}
	description := fmt.Sprintf("mattingctl %s: %s replicas of %s", opts.Name, replicaCount(up.Options), strings.Join(up.Command, " "))
	if len(up.Services) > 0 {
		var svcs []string
		for _, svc := range up.Services {
			svcs = append(svcs, fmt.Sprintf("%s (%s replicas)", svc.Name, replicaCount(svc.Options)))
		}
		description = fmt.Sprintf("mattingctl %s: services %s", opts.Name, strings.Join(svcs, ", "))
	}
	desc, err := unitfile.Value(description)
	if err != nil {
		desc = value("mattingctl " + opts.Name)
	}
	return []unitfile.Section{
		{Name: "Unit", Entries: []unitfile.Entry{
			{Key: "Description", Value: desc},
			{Key: "Wants", Value: "network-online.target"},
			{Key: "After", Value: "network-online.target"},
		}},
		{Name: "Service", Entries: service},
		{Name: "Install", Entries: []unitfile.Entry{{Key: "WantedBy", Value: "multi-user.target"}}},
	}, bad
}

// replicaCount is --replicas as the description says it: 4, or 2-8.
func replicaCount(o supervisor.Options) string {
	if o.MaxReplicas > o.Replicas {
		return fmt.Sprintf("%d-%d", o.Replicas, o.MaxReplicas)
	}
	return fmt.Sprint(o.Replicas)
}

// unitStartTimeout bounds up's start: every wave of --start-concurrency
// replicas may take --ready-timeout, and each warm-up request
// --upstream-timeout.
func unitStartTimeout(o supervisor.Options) time.Duration {
	waves := 1
	if o.StartConcurrency > 0 {
		waves = (o.Replicas + o.StartConcurrency - 1) / o.StartConcurrency
	}
	per := o.ReadyTimeout
	if o.Warmup != "" {
		per += time.Duration(max(o.WarmupCount, 1)) * o.UpstreamTimeout
	}
	return time.Duration(waves)*per + unitStartMargin
}

// unitSeconds writes d as systemd's time span in whole seconds, rounded
// up: "45s".
func unitSeconds(d time.Duration) string {
	return fmt.Sprintf("%ds", (d+time.Second-1)/time.Second)
}
