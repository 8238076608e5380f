package main

import (
	"context"
	"io"
	"os"
	"os/signal"

	"github.com/spf13/cobra"

	"github.com/mattingctl/mattingctl/internal/daemon"
)

type logsOptions struct {
	Out     io.Writer
	Name    string
	Follow  bool
	Replica int
}

func newLogsCmd(f *factory, g *globalOptions, runF func(*logsOptions) error) *cobra.Command {
	opts := &logsOptions{Out: f.Out}
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
	cmd.Flags().BoolVarP(&opts.Follow, "follow", "f", false, "keep printing new lines until Ctrl-C")
	cmd.Flags().IntVar(&opts.Replica, "replica", 0, "only replica K's output")
	return cmd
}

func logsRun(opts *logsOptions) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	return daemon.Logs(ctx, opts.Out, "", opts.Name, opts.Replica, opts.Follow)
}
