package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/mattingctl/mattingctl/internal/control"
)

// globalOptions are the flags every command takes.
type globalOptions struct {
	Name string
}

// instanceClient is what the commands ask of a running instance; the
// control socket's client is the real one, tests pass fakes.
type instanceClient interface {
	Status(ctx context.Context) (control.Status, error)
	Scale(ctx context.Context, n int) (control.ScaleResult, error)
	Restart(ctx context.Context) (control.RestartResult, error)
	RestartReplica(ctx context.Context, id int) (control.RestartResult, error)
	Reload(ctx context.Context) (control.ReloadResult, error)
	Set(ctx context.Context, settings []string) (control.ReloadResult, error)
	Down(ctx context.Context) error
	Dashboard(ctx context.Context) (control.DashboardAccess, error)
}

// factory is what the commands take from the world outside: their output
// streams and a way to reach an instance.
type factory struct {
	Out, ErrOut io.Writer
	// Client connects to the instance called name.
	Client func(name string) (instanceClient, error)
	// Instances returns the state directory and the names of the
	// instances with a control socket in it.
	Instances func() (dir string, names []string, err error)
	// Self is this mattingctl binary, which `up` runs again as its
	// instance's reaper; empty (as in tests) means no reaper.
	Self string
}

// defaultFactory writes to the process's stdout and stderr and reaches
// instances through their control sockets.
func defaultFactory() *factory {
	self, _ := os.Executable() // without it, no reaper
	return &factory{
		Out:    os.Stdout,
		ErrOut: os.Stderr,
		Self:   self,
		Client: func(name string) (instanceClient, error) {
			c, err := control.Connect("", name)
			if err != nil {
				return nil, err // not a nil *Client in a non-nil interface
			}
			return c, nil
		},
		Instances: func() (string, []string, error) {
			dir, err := control.StateDir()
			if err != nil {
				return "", nil, err
			}
			names, err := control.Instances(dir)
			return dir, names, err
		},
	}
}

// runFuncs replace the commands' work in tests; nil fields mean the real one.
type runFuncs struct {
	up        func(*upOptions) error
	status    func(*statusOptions) error
	scale     func(*scaleOptions) error
	down      func(*downOptions) error
	restart   func(*restartOptions) error
	reload    func(*reloadOptions) error
	set       func(*reloadOptions) error
	logs      func(*logsOptions) error
	top       func(*topOptions) error
	dashboard func(*dashboardOptions) error
	tune      func(*tuneOptions) error
	ls        func(*lsOptions) error
	unit      func(*systemdUnitOptions) error
}

func newRootCmd(f *factory, run runFuncs) *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "mattingctl",
		Short: "Serve a model at high concurrency: N replicas behind a least-connection proxy",
		Long: `mattingctl runs N copies of a single-process model server on consecutive
ports, restarts them when they crash, and balances requests to them through
an embedded least-connection proxy.

  mattingctl up --replicas 4 -- python3 app.py
  mattingctl ls
  mattingctl status
  mattingctl top
  mattingctl dashboard --open
  mattingctl scale 6
  mattingctl restart
  mattingctl set max-inflight=2 policy=round_robin
  mattingctl reload
  mattingctl down
  mattingctl tune --request predict.json -- python3 app.py`,
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(f.Out)
	root.SetErr(f.ErrOut)
	root.SetVersionTemplate("mattingctl {{.Version}}\n")
	root.PersistentFlags().StringVar(&g.Name, "name", control.DefaultName, "instance name, so several can run side by side")
	root.AddCommand(
		newUpCmd(f, g, run.up),
		newLsCmd(f, run.ls),
		newStatusCmd(f, g, run.status),
		newScaleCmd(f, g, run.scale),
		newDownCmd(f, g, run.down),
		newRestartCmd(f, g, run.restart),
		newReloadCmd(f, g, run.reload),
		newSetCmd(f, g, run.set),
		newLogsCmd(f, g, run.logs),
		newTopCmd(f, g, run.top),
		newDashboardCmd(f, g, run.dashboard),
		newTuneCmd(f, g, run.tune),
		newSystemdUnitCmd(f, g, run.unit),
		newVersionCmd(f),
	)
	suggestCommands(root)
	plainErrors(root.PersistentFlags())
	for _, c := range root.Commands() {
		plainErrors(c.Flags())
	}
	return root
}

// clientFor returns a function connecting to the instance that g names,
// when the command runs (after its flags are parsed).
func clientFor(f *factory, g *globalOptions) func() (instanceClient, error) {
	return func() (instanceClient, error) { return f.Client(g.Name) }
}

// addServiceFlag adds --service to cmd, whose client (*client) then applies
// its calls to that service of an instance of several.
func addServiceFlag(cmd *cobra.Command, client *func() (instanceClient, error)) {
	var name string
	cmd.Flags().StringVar(&name, "service", "", "the service, of an instance of several (up -f with services:)")
	connect := *client
	*client = func() (instanceClient, error) {
		c, err := connect()
		if err != nil || name == "" {
			return c, err
		}
		cc, ok := c.(*control.Client)
		if !ok {
			return nil, fmt.Errorf("--service %s: this client cannot name a service", name)
		}
		cc.Service = name
		return cc, nil
	}
}
