package main

import (
	"github.com/spf13/cobra"

	"github.com/mattingctl/mattingctl/supervisor"
)

// globalOptions are the flags every command takes.
type globalOptions struct {
	Name string
}

// runFuncs replace the commands' work in tests; nil fields mean the real one.
type runFuncs struct {
	up      func(*upOptions) error
	status  func(*statusOptions) error
	scale   func(*scaleOptions) error
	down    func(*downOptions) error
	restart func(*restartOptions) error
	logs    func(*logsOptions) error
}

func newRootCmd(f runFuncs) *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "mattingctl",
		Short: "Serve a model at high concurrency: N replicas behind a least-connection proxy",
		Long: `mattingctl runs N copies of a single-process model server on consecutive
ports, restarts them when they crash, and balances requests to them through
an embedded least-connection proxy.

  mattingctl up --replicas 4 -- python3 app.py
  mattingctl status
  mattingctl scale 6
  mattingctl restart
  mattingctl down`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.Name, "name", supervisor.DefaultName, "instance name, so several can run side by side")
	root.AddCommand(newUpCmd(g, f.up), newStatusCmd(g, f.status), newScaleCmd(g, f.scale), newDownCmd(g, f.down), newRestartCmd(g, f.restart), newLogsCmd(g, f.logs))
	return root
}
