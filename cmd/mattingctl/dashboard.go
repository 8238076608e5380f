package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os/exec"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/mattingctl/mattingctl/internal/control"
)

type dashboardOptions struct {
	Out, ErrOut io.Writer
	Client      func() (instanceClient, error)
	Name        string
	Open        bool
	// Opener writes the page that sends a browser on to url, for the
	// instance called name, and returns its path (control.WriteOpener).
	Opener func(name, url string) (string, error)
	// Browser opens a file in the user's browser; nil when this system
	// has no opener (xdg-open, open).
	Browser func(path string) error
}

func newDashboardCmd(f *factory, g *globalOptions, runF func(*dashboardOptions) error) *cobra.Command {
	opts := &dashboardOptions{Out: f.Out, ErrOut: f.ErrOut, Client: clientFor(f, g), Opener: writeOpener, Browser: systemBrowser()}
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Print the dashboard's URL with the token its actions need (--open: open it in a browser)",
		Long: `Print the URL of the instance's dashboard with its admin token, as Jupyter
does: the page takes the token from the URL, keeps it for its actions
(scale, rolling restart) and removes it from the address bar. Only the user
who started the instance (and root) can get it: it comes over the control
socket.

  mattingctl dashboard          http://127.0.0.1:9109/?token=...
  mattingctl dashboard --open   the same, in a browser (xdg-open or open)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = g.Name
			if runF != nil {
				return runF(opts)
			}
			return dashboardRun(opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Open, "open", false, "open the URL in a browser too, with xdg-open (open on macOS)")
	return cmd
}

func dashboardRun(opts *dashboardOptions) error {
	c, err := opts.Client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := c.Dashboard(ctx)
	if err != nil {
		return err
	}
	link := d.URL + "?" + url.Values{"token": {d.Token}}.Encode()
	if _, err := fmt.Fprintln(opts.Out, link); err != nil {
		return err
	}
	if !opts.Open {
		return nil
	}
	if opts.Browser == nil {
		fmt.Fprintln(opts.ErrOut, "mattingctl: no browser opener (xdg-open) on this system; open the URL above")
		return nil
	}
	// The browser is handed a file that redirects to the link, never the
	// link itself: a command line is visible to every user (ps).
	page, err := opts.Opener(opts.Name, link)
	if err != nil {
		return err
	}
	if err := opts.Browser(page); err != nil {
		fmt.Fprintf(opts.ErrOut, "mattingctl: %v; open the URL above\n", err)
	}
	return nil
}

// writeOpener writes the page that redirects to link in the state
// directory, mode 0600; the instance removes it when it stops.
func writeOpener(name, link string) (string, error) {
	dir, err := control.StateDir()
	if err != nil {
		return "", err
	}
	return control.WriteOpener(dir, name, link)
}

// openerWait is how long a browser opener is waited for: long enough to
// hear that it failed, not so long that a browser it runs in the
// foreground holds the command up.
const openerWait = 3 * time.Second

// systemBrowser returns a function opening a file with this system's
// opener, or nil when there is none.
func systemBrowser() func(path string) error {
	name := "xdg-open"
	if runtime.GOOS == "darwin" {
		name = "open"
	}
	opener, err := exec.LookPath(name)
	if err != nil {
		return nil
	}
	return func(path string) error { return runOpener(opener, path, openerWait) }
}

// runOpener runs opener on path and waits up to wait for it: an exit
// status other than 0 is an error; still running after wait (a browser in
// the foreground) is success. Its output goes nowhere, so that a browser
// it leaves running never writes to a closed pipe.
func runOpener(opener, path string, wait time.Duration) error {
	cmd := exec.Command(opener, path)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", opener, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%s could not open a browser (%v)", opener, ee)
		}
		return err
	case <-t.C:
		return nil
	}
}
