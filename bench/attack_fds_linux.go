package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"syscall"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// fileLimit is the `ulimit -n` the descriptor attacks run mattingctl
// under: the common default, at which they once used every descriptor.
const fileLimit = 1024

// idleAdminConns is attack 5's first half: 1,100 keep-alive connections
// to the admin listener, each having sent a request and reading nothing
// more, against mattingctl at ulimit -n 1024 with default flags. Bound:
// proxy requests still answered (the legitimate client), `mattingctl
// status` answers, and a replica killed with kill -9 is ready again.
func idleAdminConns(ctx context.Context, e *environment, _ attackOptions) (attackRow, error) {
	const idle = 1100
	t, err := e.startTarget(ctx, "adminconns", fileLimit, nil, nil)
	if err != nil {
		return attackRow{}, err
	}
	defer t.stop()
	st, err := t.status(ctx)
	if err != nil {
		return attackRow{}, err
	}
	legit := startLegit(ctx, t.url("/legit"))
	defer legit.finish()
	conns := make([]net.Conn, 0, idle)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	req := []byte("GET /livez HTTP/1.1\r\nHost: " + st.Admin + "\r\n\r\n")
	for range idle {
		c, err := net.DialTimeout("tcp", st.Admin, 5*time.Second)
		if err != nil {
			return attackRow{}, fmt.Errorf("admin connection %d: %w", len(conns)+1, err)
		}
		conns = append(conns, c)
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(req); err != nil {
			return attackRow{}, fmt.Errorf("admin connection %d: %w", len(conns), err)
		}
	}
	// The first --admin-max-conns (64) are answered and held; the rest
	// wait in the kernel's backlog.
	for range 100 {
		if t.openFiles() >= 64 || !sleepCtx(ctx, 100*time.Millisecond) {
			break
		}
	}
	row := attackRow{attack: fmt.Sprintf("1,100 idle admin connections, mattingctl at ulimit -n %d", fileLimit)}
	return t.stillServes(ctx, row, legit)
}

// webSockets is attack 5's second half: 600 WebSockets through the proxy
// at ulimit -n 1024 and default flags; the derived --max-upgraded admits
// its number and answers the rest 503. The same bound as idleAdminConns.
func webSockets(ctx context.Context, e *environment, _ attackOptions) (attackRow, error) {
	const sockets = 600
	t, err := e.startTarget(ctx, "websockets", fileLimit, nil, nil)
	if err != nil {
		return attackRow{}, err
	}
	defer t.stop()
	st, err := t.status(ctx)
	if err != nil {
		return attackRow{}, err
	}
	legit := startLegit(ctx, t.url("/legit"))
	defer legit.finish()
	var open []*testutil.WebSocket
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	codes := map[int]int{}
	for range sockets {
		c, code, err := testutil.DialWebSocket(t.addr(), "/ws", 10*time.Second)
		if err != nil {
			return attackRow{}, fmt.Errorf("WebSocket %d: %w", len(open)+1, err)
		}
		codes[code]++
		if c != nil {
			open = append(open, c)
		}
	}
	row := attackRow{attack: fmt.Sprintf("600 WebSockets, mattingctl at ulimit -n %d", fileLimit)}
	if len(open) > 0 {
		last := open[len(open)-1]
		_ = last.SetDeadline(time.Now().Add(10 * time.Second))
		if err := last.Echo("still open"); err != nil {
			row.unmet("the last WebSocket: %v", err)
		}
	}
	if codes[http.StatusSwitchingProtocols] != st.MaxUpgraded || codes[http.StatusServiceUnavailable] != sockets-st.MaxUpgraded {
		row.unmet("answers %v, --max-upgraded %d", codes, st.MaxUpgraded)
	}
	row, err = t.stillServes(ctx, row, legit)
	row.bound = fmt.Sprintf("%d upgraded (--max-upgraded %d), %d answered 503; %s",
		codes[http.StatusSwitchingProtocols], st.MaxUpgraded, codes[http.StatusServiceUnavailable], row.bound)
	return row, err
}

// stillServes measures, with a descriptor flood open, what the instance
// still does: how many descriptors it holds of its limit, how long
// `mattingctl status` takes (the median of 3), and how long a replica
// killed with kill -9 takes to be ready again; the legitimate client
// runs throughout and is finished 1 s after the restart.
func (t *target) stillServes(ctx context.Context, row attackRow, legit *legitLoad) (attackRow, error) {
	fds := t.openFiles()
	var took []time.Duration
	for range 3 {
		d, err := t.timedStatus(ctx)
		if err != nil {
			row.unmet("status failed")
			row.legit = legit.finish()
			row.rss = t.peakRSS()
			row.bound = err.Error()
			return row, nil
		}
		took = append(took, d)
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	st, err := t.status(ctx)
	if err != nil {
		return row, err
	}
	old := st.Replicas[0]
	if err := syscall.Kill(old.Pid, syscall.SIGKILL); err != nil {
		return row, fmt.Errorf("kill -9 of %s: %w", old.Name, err)
	}
	killed := time.Now()
	back := time.Duration(0)
	for time.Since(killed) < 20*time.Second && sleepCtx(ctx, 20*time.Millisecond) {
		s, err := t.status(ctx)
		if err != nil {
			continue
		}
		if r := s.Replicas[0]; r.State == control.Ready && r.Pid != 0 && r.Pid != old.Pid {
			back = time.Since(killed)
			break
		}
	}
	sleepCtx(ctx, time.Second) // requests on the restarted replica
	row.legit = legit.finish()
	row.rss = t.peakRSS()
	restarted := "NOT ready again within 20 s"
	if back > 0 {
		restarted = "ready again " + back.Round(time.Millisecond).String() + " after kill -9"
	} else {
		row.unmet("no restart")
	}
	row.bound = fmt.Sprintf("bound: proxy requests answered (legit ≥ 99%% 200), `mattingctl status` answers, a killed replica restarts; status in %s (median of 3); %s %s; mattingctl held %d of %d descriptors",
		took[1].Round(time.Millisecond), old.Name, restarted, fds, fileLimit)
	row.checkCommon(99, 0)
	return row, nil
}
