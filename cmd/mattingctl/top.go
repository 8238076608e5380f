package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/term"
	"github.com/spf13/cobra"

	"github.com/mattingctl/mattingctl/internal/control"
)

type topOptions struct {
	Out    io.Writer
	In     io.Reader
	Client func() (instanceClient, error)
	Name   string
	// Interval is the time between polls; 0 means a second.
	Interval time.Duration
	// Now is the time uptimes and rates are measured by; nil means time.Now.
	Now func() time.Time
	// Interactive reports whether top draws a live screen; nil means when
	// both In and Out are terminals.
	Interactive func() bool
}

func newTopCmd(f *factory, g *globalOptions, runF func(*topOptions) error) *cobra.Command {
	opts := &topOptions{Out: f.Out, In: os.Stdin, Client: clientFor(f, g)}
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Watch the replicas live: load, requests per second, CPU and memory",
		Long: `top shows the instance's status refreshed every second, in 80 columns:
the instance, its queue, a row per replica and a sparkline per replica of
its requests per second over the last minute. q or Ctrl-C quits.

When stdin or stdout is not a terminal, top prints one frame (a second
apart from its first poll, so rates are known) without colours and exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = g.Name
			if runF != nil {
				return runF(opts)
			}
			return topRun(opts)
		},
	}
	return cmd
}

func topRun(opts *topOptions) error {
	interval, now := opts.Interval, opts.Now
	if interval <= 0 {
		interval = time.Second
	}
	if now == nil {
		now = time.Now
	}
	interactive := opts.Interactive
	if interactive == nil {
		interactive = func() bool { return isTerminal(opts.In) && isTerminal(opts.Out) }
	}
	c, err := opts.Client()
	if err != nil {
		return err
	}
	// The first poll happens before the screen is taken, so that a missing
	// instance is the same one-line error as status gives.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	st, err := c.Status(ctx)
	cancel()
	if err != nil {
		return err
	}
	at := now()
	if !interactive() {
		return topFrame(opts.Out, c, opts.Name, st, at, interval, now)
	}
	screen := topScreen{
		styles: newTopStyles(),
		footer: "q or ctrl+c: quit",
	}
	m := newTopModel(c, opts.Name, st, at, interval, now, screen)
	popts := []tea.ProgramOption{tea.WithInput(opts.In), tea.WithOutput(opts.Out)}
	if !isTerminal(opts.Out) { // a live screen on a pipe (tests): no terminal to say its size
		popts = append(popts, tea.WithWindowSize(topWidth, 40))
	}
	final, err := tea.NewProgram(m, popts...).Run()
	if errors.Is(err, tea.ErrInterrupted) { // SIGINT from outside the terminal: quit as Ctrl-C does
		err = nil
	}
	if err != nil {
		return fmt.Errorf("top: %w", err)
	}
	if m, ok := final.(topModel); ok {
		return m.err
	}
	return nil
}

// topFrame prints one plain frame for a pipe or a file: it polls once
// more an interval after the first, so the rates are known.
func topFrame(w io.Writer, c instanceClient, name string, first control.Status, at time.Time, interval time.Duration, now func() time.Time) error {
	m := newTopModel(c, name, first, at, interval, now, topScreen{})
	time.Sleep(interval)
	next, _ := m.Update(m.poll()())
	m = next.(topModel)
	if m.err != nil {
		return m.err
	}
	_, err := io.WriteString(w, m.frame()+"\n")
	return err
}

// isTerminal reports whether f is a terminal.
func isTerminal(f any) bool {
	fd, ok := f.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(fd.Fd())
}
