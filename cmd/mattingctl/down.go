package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/mattingctl/mattingctl/supervisor"
)

type downOptions struct {
	Name    string
	Timeout time.Duration
}

func newDownCmd(g *globalOptions, runF func(*downOptions) error) *cobra.Command {
	opts := &downOptions{}
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop the instance gracefully, as Ctrl-C does, and wait until it has exited",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = g.Name
			if runF != nil {
				return runF(opts)
			}
			return downRun(opts)
		},
	}
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", 2*time.Minute, "how long to wait for the instance to stop")
	return cmd
}

func downRun(opts *downOptions) error {
	c, err := supervisor.Connect("", opts.Name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	if err := c.Down(ctx); err != nil {
		return err
	}
	fmt.Printf("instance %s stopped\n", opts.Name)
	return nil
}
