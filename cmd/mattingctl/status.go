package main

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/spf13/cobra"
)

type statusOptions struct {
	Out    io.Writer
	Client func() (instanceClient, error)
	JSON   bool
	// Now is the time uptimes are measured to; nil means time.Now.
	Now func() time.Time
}

func newStatusCmd(f *factory, g *globalOptions, runF func(*statusOptions) error) *cobra.Command {
	opts := &statusOptions{Out: f.Out, Client: clientFor(f, g), Now: time.Now}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each replica's state, load, CPU and memory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return statusRun(opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	return cmd
}

func statusRun(opts *statusOptions) error {
	c, err := opts.Client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if opts.JSON {
		enc := json.NewEncoder(opts.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	return writeStatus(opts.Out, st, opts.Now())
}
