package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
)

type downOptions struct {
	Out     io.Writer
	Client  func() (instanceClient, error)
	Name    string
	Timeout time.Duration
}

func newDownCmd(f *factory, g *globalOptions, runF func(*downOptions) error) *cobra.Command {
	opts := &downOptions{Out: f.Out, Client: clientFor(f, g)}
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
	c, err := opts.Client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	if err := c.Down(ctx); err != nil {
		return err
	}
	_, err = fmt.Fprintf(opts.Out, "instance %s stopped\n", opts.Name)
	return err
}
