package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/mattingctl/mattingctl/internal/control"
)

type restartOptions struct {
	Out     io.Writer
	Client  func() (instanceClient, error)
	Timeout time.Duration
	// Replica restarts only that replica; 0 means every one.
	Replica int
}

func newRestartCmd(f *factory, g *globalOptions, runF func(*restartOptions) error) *cobra.Command {
	opts := &restartOptions{Out: f.Out, Client: clientFor(f, g)}
	cmd := &cobra.Command{
		Use:   "restart",
		Short: "Rolling restart: replace each replica's process with no drop in capacity",
		Long: `Replace every replica's process, one replica at a time: start its successor
on a spare port, wait until it is ready, then take the old process out of
rotation, let its requests finish and stop it. Capacity never drops below the
replica count. A failed replica is started afresh. If a successor does not
become ready, the restart stops there and the old processes serve on.

  mattingctl restart              # every replica, one at a time
  mattingctl restart --replica 2  # replica-2 only`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("replica") && opts.Replica < 1 {
				return fmt.Errorf("--replica must be a replica number, 1 or more, not %d", opts.Replica)
			}
			if runF != nil {
				return runF(opts)
			}
			return restartRun(opts)
		},
	}
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", 30*time.Minute, "how long to wait for the whole rolling restart")
	cmd.Flags().IntVar(&opts.Replica, "replica", 0, "restart only replica K (default: every replica)")
	addServiceFlag(cmd, &opts.Client)
	return cmd
}

func restartRun(opts *restartOptions) error {
	c, err := opts.Client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	var res control.RestartResult
	if opts.Replica > 0 {
		res, err = c.RestartReplica(ctx, opts.Replica)
	} else {
		res, err = c.Restart(ctx)
	}
	if err != nil {
		return err
	}
	if err := writeRestart(opts.Out, res); err != nil {
		return err
	}
	if res.Error != "" {
		if opts.Replica > 0 {
			return errors.New("restart failed: " + res.Error)
		}
		return errors.New("rolling restart stopped: " + res.Error)
	}
	if res.CertError != "" {
		return errors.New("TLS certificate not re-read, the previous one is still served: " + res.CertError)
	}
	return nil
}
