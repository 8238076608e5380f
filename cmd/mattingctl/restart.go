package main

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/spf13/cobra"
)

type restartOptions struct {
	Out     io.Writer
	Client  func() (instanceClient, error)
	Timeout time.Duration
}

func newRestartCmd(f *factory, g *globalOptions, runF func(*restartOptions) error) *cobra.Command {
	opts := &restartOptions{Out: f.Out, Client: clientFor(f, g)}
	cmd := &cobra.Command{
		Use:   "restart",
		Short: "Rolling restart: replace each replica's process with no drop in capacity (as SIGHUP to up)",
		Long: `Replace every replica's process, one replica at a time: start its successor
on a spare port, wait until it is ready, then take the old process out of
rotation, let its requests finish and stop it. Capacity never drops below the
replica count. If a successor does not become ready, the restart stops there
and the old processes serve on.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return restartRun(opts)
		},
	}
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", 30*time.Minute, "how long to wait for the whole rolling restart")
	return cmd
}

func restartRun(opts *restartOptions) error {
	c, err := opts.Client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	res, err := c.Restart(ctx)
	if err != nil {
		return err
	}
	if err := writeRestart(opts.Out, res); err != nil {
		return err
	}
	if res.Error != "" {
		return errors.New("rolling restart stopped: " + res.Error)
	}
	return nil
}
