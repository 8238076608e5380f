package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mattingctl/mattingctl/internal/control"
)

type lsOptions struct {
	Out io.Writer
	// Instances returns the state directory and the names of the
	// instances with a socket in it; Client connects to one.
	Instances func() (dir string, names []string, err error)
	Client    func(name string) (instanceClient, error)
	JSON      bool
	// Now is the time uptimes are measured to; nil means time.Now.
	Now func() time.Time
	// Timeout bounds the wait for each instance's answer.
	Timeout time.Duration
}

func newLsCmd(f *factory, runF func(*lsOptions) error) *cobra.Command {
	opts := &lsOptions{Out: f.Out, Instances: f.Instances, Client: f.Client, Now: time.Now, Timeout: 5 * time.Second}
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List this user's instances: name, pid, proxy address, replicas ready, uptime",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return lsRun(opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	return cmd
}

// The states of an instance in ls.
const (
	lsRunning = "running"
	// lsStale: its control socket is there but nothing serves it: the
	// instance was killed.
	lsStale = "stale"
	// lsDenied: the socket is another user's.
	lsDenied = "permission denied"
	// lsUnreachable: any other failure (no answer in time).
	lsUnreachable = "unreachable"
)

// lsEntry is one instance in `mattingctl ls --json`.
type lsEntry struct {
	Name  string `json:"name"`
	State string `json:"state"`
	Pid   int    `json:"pid,omitempty"`
	// Proxy is the proxy's address:port, * for every interface; URL the
	// URL up printed.
	Proxy     string     `json:"proxy,omitempty"`
	URL       string     `json:"url,omitempty"`
	Ready     int        `json:"ready"`
	Replicas  int        `json:"replicas"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	// Error says why an instance that is not running is listed.
	Error string `json:"error,omitempty"`
}

func lsRun(opts *lsOptions) error {
	dir, names, err := opts.Instances()
	if err != nil {
		return err
	}
	entries := make([]lsEntry, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			entries[i] = lsOne(opts, name)
		}()
	}
	wg.Wait()
	if opts.JSON {
		enc := json.NewEncoder(opts.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	}
	if len(entries) == 0 {
		_, err := fmt.Fprintf(opts.Out, "no instances in %s; start one with `mattingctl up`\n", dir)
		return err
	}
	return writeLs(opts.Out, entries, opts.Now())
}

// lsOne asks instance name for its status.
func lsOne(opts *lsOptions, name string) lsEntry {
	e := lsEntry{Name: name}
	c, err := opts.Client(name)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
		defer cancel()
		var st control.Status
		if st, err = c.Status(ctx); err == nil {
			e.State, e.Pid, e.URL = lsRunning, st.Pid, st.URL
			e.Proxy = proxyAddr(st.Host, st.Port)
			e.Ready, e.Replicas = st.Ready(), st.Desired
			started := st.StartedAt
			e.StartedAt = &started
			return e
		}
	}
	// Permission first: another user's socket, dead or alive, is theirs,
	// not stale.
	switch {
	case errors.Is(err, control.ErrPermission):
		e.State = lsDenied
	case errors.Is(err, control.ErrNotRunning):
		e.State = lsStale
	default:
		e.State = lsUnreachable
	}
	e.Error = err.Error()
	return e
}

// proxyAddr is the proxy's address as ls shows it: host:port, with * for
// every interface.
func proxyAddr(host string, port int) string {
	if control.AllInterfaces(host) {
		host = "*"
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// writeLs writes the table `mattingctl ls` prints, then a line for each
// instance listed but not running, saying why.
func writeLs(w io.Writer, entries []lsEntry, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPID\tPROXY\tREADY\tUPTIME")
	for _, e := range entries {
		if e.State != lsRunning {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t%s\n", e.Name, e.State)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d/%d\t%s\n", e.Name, e.Pid, e.Proxy, e.Ready, e.Replicas, formatDuration(now.Sub(*e.StartedAt)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range entries {
		switch e.State {
		case lsRunning:
		case lsStale:
			fmt.Fprintf(w, "%s: stale: its control socket is left, but its mattingctl is not running (killed?); `mattingctl up --name %s` replaces it\n", e.Name, e.Name)
		default:
			fmt.Fprintf(w, "%s: %s\n", e.Name, e.Error)
		}
	}
	return nil
}
