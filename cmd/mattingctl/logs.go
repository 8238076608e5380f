package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/spf13/cobra"

	"github.com/mattingctl/mattingctl/internal/daemon"
)

type logsOptions struct {
	Out io.Writer
	// ErrOut receives the note on why following ended.
	ErrOut  io.Writer
	Name    string
	Follow  bool
	Replica int
	Service string
	// Dir is the state directory, and Running says whether the instance
	// runs; empty and nil mean the real ones (daemon.LogsOptions).
	Dir     string
	Running func() bool
}

func newLogsCmd(f *factory, g *globalOptions, runF func(*logsOptions) error) *cobra.Command {
	opts := &logsOptions{Out: f.Out, ErrOut: f.ErrOut}
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Print the log of an instance started with up -d, and follow it with -f",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = g.Name
			if runF != nil {
				return runF(opts)
			}
			return logsRun(opts)
		},
	}
	cmd.Flags().BoolVarP(&opts.Follow, "follow", "f", false, "keep printing new lines until the instance stops, or Ctrl-C")
	cmd.Flags().IntVar(&opts.Replica, "replica", 0, "only replica K's lines: its output and mattingctl's lines about it")
	cmd.Flags().StringVar(&opts.Service, "service", "", "only that service's lines, of an instance of several (with --replica, its replica K's)")
	return cmd
}

func logsRun(opts *logsOptions) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	end, err := daemon.Logs(ctx, opts.Out, daemon.LogsOptions{
		Dir:     opts.Dir,
		Name:    opts.Name,
		Replica: opts.Replica,
		Service: opts.Service,
		Follow:  opts.Follow,
		Running: opts.Running,
	})
	if err != nil {
		return err
	}
	switch end {
	case daemon.Stopped:
		fmt.Fprintf(opts.ErrOut, "instance %s stopped\n", opts.Name)
	case daemon.NotRunning:
		fmt.Fprintf(opts.ErrOut, "instance %s is not running: nothing more to follow\n", opts.Name)
	}
	return nil
}
