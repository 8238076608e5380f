package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
)

// Client talks to a running instance over its control socket.
type Client struct {
	name, path string
	http       *http.Client
	// Service names the service that Scale, Restart, RestartReplica,
	// Reload and Set apply to, in an instance of several; empty means the
	// instance's only one.
	Service string
}

// Connect returns a client for the instance called name whose socket is in
// dir (StateDir() when empty), or an error naming the instance when none is
// running.
func Connect(dir, name string) (*Client, error) {
	if name == "" {
		name = DefaultName
	}
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if dir == "" {
		d, err := StateDir()
		if err != nil {
			return nil, err
		}
		dir = d
	}
	path := SocketPath(dir, name)
	if _, err := os.Stat(path); err != nil {
		if isPermission(err) {
			return nil, errorOf(ErrPermission, "permission denied: cannot reach control socket %s of instance %q (run mattingctl as the user who started it)", path, name)
		}
		return nil, errorOf(ErrNotRunning, "no mattingctl instance %q is running (no control socket at %s); start one with `mattingctl up`", name, path)
	}
	if err := CheckStateDir(dir); err != nil {
		var unsafe *UnsafeDirError
		if errors.As(err, &unsafe) && !unsafe.Writable {
			return nil, errorOf(ErrPermission, "permission denied: control socket %s is not yours: %w", path, err)
		}
		return nil, fmt.Errorf("refusing control socket %s: %w", path, err)
	}
	// Every connection is checked: the socket at path may have been
	// replaced since the last one.
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return nil, err
		}
		if err := checkPeer(c, path); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	// No keep-alive: a client is made per command or poll, and an idle
	// connection would stay open in the instance until the client exits.
	c := &Client{name: name, path: path, http: &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}}
	return c, nil
}

// Status returns the instance's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.call(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Scale sets the instance's replica count to n and waits until done.
func (c *Client) Scale(ctx context.Context, n int) (ScaleResult, error) {
	var res ScaleResult
	err := c.call(ctx, http.MethodPost, c.withService("/v1/scale"), scaleRequest{Replicas: &n}, &res)
	return res, err
}

// Restart runs a rolling restart and waits until it is done.
func (c *Client) Restart(ctx context.Context) (RestartResult, error) {
	var res RestartResult
	err := c.call(ctx, http.MethodPost, c.withService("/v1/restart"), nil, &res)
	return res, err
}

// RestartReplica gives replica id a new process (successor first, or
// afresh if it failed) and waits until it is done.
func (c *Client) RestartReplica(ctx context.Context, id int) (RestartResult, error) {
	var res RestartResult
	err := c.call(ctx, http.MethodPost, c.withService("/v1/restart"), restartRequest{Replica: &id}, &res)
	return res, err
}

// Reload makes the instance read its config file again and apply what
// changed, and waits until it has (a rolling restart included).
func (c *Client) Reload(ctx context.Context) (ReloadResult, error) {
	var res ReloadResult
	err := c.call(ctx, http.MethodPost, c.withService("/v1/reload"), nil, &res)
	return res, err
}

// Set applies settings, FLAG=VALUE with up's flag names, and waits until
// the instance has (a rolling restart included).
func (c *Client) Set(ctx context.Context, settings []string) (ReloadResult, error) {
	var res ReloadResult
	err := c.call(ctx, http.MethodPost, c.withService("/v1/set"), setRequest{Settings: settings}, &res)
	return res, err
}

// Dashboard returns the dashboard's URL and the token its actions need.
func (c *Client) Dashboard(ctx context.Context) (DashboardAccess, error) {
	var d DashboardAccess
	err := c.call(ctx, http.MethodGet, "/v1/dashboard", nil, &d)
	return d, err
}

// Down stops the instance gracefully and returns once it has stopped.
func (c *Client) Down(ctx context.Context) error {
	return c.call(ctx, http.MethodPost, "/v1/down", nil, nil)
}

// withService is path with the query that names c.Service, if any.
func (c *Client) withService(path string) string {
	if c.Service == "" {
		return path
	}
	return path + "?" + url.Values{"service": {c.Service}}.Encode()
}

func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://mattingctl"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var untrusted *UntrustedPeerError
		var opErr *net.OpError
		switch {
		case errors.As(err, &untrusted):
			return untrusted
		case errors.As(err, &opErr) && opErr.Op == "dial":
			return c.dialError(opErr)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("instance %q did not answer in time", c.name)
		}
		if uid, ok := socketOwner(c.path); ok && uid != os.Geteuid() {
			// The server closes connections of other users unread.
			return errorOf(ErrPermission, "permission denied: control socket %s belongs to uid %d, whose instance answers only that user and root (%v)", c.path, uid, err)
		}
		return fmt.Errorf("instance %q: %w", c.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e apiError
		if json.NewDecoder(resp.Body).Decode(&e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("instance %q answered %s", c.name, resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("reading instance %q's answer: %w", c.name, err)
	}
	return nil
}

// dialError explains a failed connection to the control socket: nothing
// listens there (a stale socket of a killed instance), nothing is there,
// or this user may not connect to it.
func (c *Client) dialError(err *net.OpError) error {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return errorOf(ErrNotRunning, "no mattingctl instance %q is running (stale control socket at %s)", c.name, c.path)
	case errors.Is(err, fs.ErrNotExist):
		return errorOf(ErrNotRunning, "no mattingctl instance %q is running (no control socket at %s); start one with `mattingctl up`", c.name, c.path)
	case isPermission(err):
		return errorOf(ErrPermission, "permission denied: cannot connect to control socket %s of instance %q, which belongs to %s (run mattingctl as that user)", c.path, c.name, ownerName(c.path))
	}
	return fmt.Errorf("instance %q: control socket %s: %w", c.name, c.path, err.Err)
}
