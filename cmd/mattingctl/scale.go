package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type scaleOptions struct {
	Out    io.Writer
	Client func() (instanceClient, error)
	// Replicas is the count to scale to; 0 when none was given, and the
	// command prints the current count instead.
	Replicas int
	Timeout  time.Duration
	// ErrOut receives the scale's warnings.
	ErrOut io.Writer
}

func newScaleCmd(f *factory, g *globalOptions, runF func(*scaleOptions) error) *cobra.Command {
	opts := &scaleOptions{Out: f.Out, Client: clientFor(f, g), ErrOut: f.ErrOut}
	cmd := &cobra.Command{
		Use:   "scale [N]",
		Short: "Set the number of replicas, live: new ones join when ready, removed ones drain first; without N, print it",
		Args:  oneCountAtMost,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				n, err := parseCount(args[0])
				if err != nil {
					return err
				}
				opts.Replicas = n
			}
			if runF != nil {
				return runF(opts)
			}
			return scaleRun(opts)
		},
	}
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", 6*time.Minute, "how long to wait for new replicas to be ready or removed ones to stop")
	cmd.SetFlagErrorFunc(negativeCount)
	addServiceFlag(cmd, &opts.Client)
	return cmd
}

// negativeCount is scale's flag error function: `scale -1` is a negative
// count, not the unknown shorthand flag -1 that pflag takes it for.
func negativeCount(_ *cobra.Command, err error) error {
	var unknown *pflag.NotExistError
	if errors.As(err, &unknown) {
		if short := unknown.GetSpecifiedShortnames(); short != "" && short[0] >= '0' && short[0] <= '9' {
			if _, cerr := parseCount("-" + short); cerr != nil {
				return cerr
			}
		}
	}
	return err
}

// oneCountAtMost is scale's argument check: a count, or none.
func oneCountAtMost(_ *cobra.Command, args []string) error {
	if len(args) > 1 {
		return fmt.Errorf("scale takes one replica count, not %d arguments (%s)", len(args), strings.Join(args, " "))
	}
	return nil
}

func scaleRun(opts *scaleOptions) error {
	c, err := opts.Client()
	if err != nil {
		return err
	}
	if opts.Replicas == 0 {
		return showScale(opts.Out, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	res, err := c.Scale(ctx, opts.Replicas)
	if err != nil {
		return err
	}
	if err := writeScale(opts.Out, res); err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(opts.ErrOut, "mattingctl: warning: %s\n", w)
	}
	if len(res.Errors) > 0 {
		return errors.New(strings.Join(res.Errors, "; "))
	}
	return nil
}

// showScale prints the instance's replica count, and the autoscaler's
// bounds when it has them: `scale` without a count.
func showScale(w io.Writer, c instanceClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, formatCount(st, time.Now()))
	return err
}
