package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The goals of scenario idleconns -memory: an idle keep-alive client
// connection costs the proxy at most idleConnKiB of resident memory, and
// 2 minutes after they have all closed its RSS is back within
// idleReturnRatio of what it was before them.
const (
	idleConnKiB     = 16
	idleReturnRatio = 1.2
	// idleSettle is how long the connections stay idle before the RSS
	// with them open is read, and idleSettleLong when it is read again:
	// past the 30 s after which the proxy closes its idle connections to
	// the replicas, which the requests opened (about 70, with 320 KiB of
	// buffers each).
	idleSettle     = 10 * time.Second
	idleSettleLong = 40 * time.Second
	// idleWatch is how long the RSS is read after they close, one reading
	// each idleWatchEvery.
	idleWatch      = 2 * time.Minute
	idleWatchEvery = 10 * time.Second
)

// idleMemory measures what idle keep-alive connections cost mattingctl
// in resident memory, and whether it gives the memory back: o.conns
// connections each send one small request, read its answer and stay
// open with nothing more to say; the supervisor's VmRSS is read before
// them, once they have been idle for idleSettle and again at
// idleSettleLong, and every idleWatchEvery for idleWatch after they have
// all closed.
//
// With o.floor a plain net/http server (internal/testutil/plainhttp)
// stands in mattingctl's place: what any server built on net/http pays.
func (e *environment) idleMemory(o idleConnsOptions) error {
	start, name := e.startIdle, "mattingctl"
	if o.floor {
		start, name = e.startPlainHTTP, "plainhttp"
	}
	m, err := start(o)
	if err != nil {
		return err
	}
	defer m.stop()
	// conns is the server's count of its open client connections, for
	// the lines below; plainhttp keeps none.
	conns := func() string { return "" }
	if m.status != nil {
		st, _, err := m.status()
		if err != nil {
			return err
		}
		if o.conns > st.MaxConns {
			return fmt.Errorf("-conns %d is more than mattingctl's max_conns %d at ulimit -n %d: the rest would wait unanswered in the listen backlog", o.conns, st.MaxConns, o.ulimit)
		}
		fmt.Printf("mattingctl under ulimit -n %d, %d replicas at --max-inflight %d: max_conns %d\n", o.ulimit, replicas, st.MaxInflight, st.MaxConns)
		conns = func() string {
			st, _, _ := m.status()
			return fmt.Sprintf("conns %d, ", st.Conns)
		}
	} else {
		fmt.Printf("plainhttp (net/http's server, a handler that answers 200) under ulimit -n %d, giving memory back every 10 s\n", o.ulimit)
	}
	time.Sleep(2 * time.Second) // past the start's last allocations
	before, err := rssKiB(m.pid)
	if err != nil {
		return err
	}
	fmt.Printf("before: %s RSS %d KiB\n", name, before)

	t0 := time.Now()
	var holders []*holder
	defer func() {
		for _, h := range holders {
			h.stop()
		}
	}()
	opened, errs := 0, 0
	for left := o.conns; left > 0; left -= holderConns {
		h, err := startHolder(m.addr, min(left, holderConns), true)
		if err != nil {
			return err
		}
		holders = append(holders, h)
		opened += h.opened
		errs += h.errs
	}
	fmt.Printf("%d connections each sent a request and read its 200 in %s (%d failed)\n", opened, time.Since(t0).Round(time.Millisecond), errs)
	if opened == 0 {
		return fmt.Errorf("no connection was opened; log: %s", m.logPath)
	}
	idleSince := time.Now()
	var perConn [2]float64
	for i, d := range []time.Duration{idleSettle, idleSettleLong} {
		time.Sleep(time.Until(idleSince.Add(d)))
		idle, err := rssKiB(m.pid)
		if err != nil {
			return err
		}
		perConn[i] = float64(idle-before) / float64(opened)
		fmt.Printf("idle for %s: %sRSS %d KiB: %.1f KiB per connection (goal: at most %d)\n", d, conns(), idle, perConn[i], idleConnKiB)
	}

	for _, h := range holders {
		if err := h.close(h.opened); err != nil {
			return err
		}
	}
	closed := time.Now()
	var rss int64
	for at := idleWatchEvery; at <= idleWatch; at += idleWatchEvery {
		time.Sleep(time.Until(closed.Add(at)))
		if rss, err = rssKiB(m.pid); err != nil {
			return err
		}
		fmt.Printf("%3.0f s after they closed: %sRSS %d KiB, %.2f of before\n", at.Seconds(), conns(), rss, float64(rss)/float64(before))
	}
	fmt.Printf("\nKiB per idle connection: %.1f after %s, %.1f after %s (goal: at most %d)\n", perConn[0], idleSettle, perConn[1], idleSettleLong, idleConnKiB)
	fmt.Printf("RSS %s after they closed / before: %.2f, %+.1f MiB (goal: at most %.1f)\n", idleWatch, float64(rss)/float64(before), float64(rss-before)/1024, idleReturnRatio)
	return nil
}

// startPlainHTTP starts plainhttp under ulimit -n o.ulimit and waits
// until it answers.
func (e *environment) startPlainHTTP(o idleConnsOptions) (*idleInstance, error) {
	port, err := portBelowEphemeral(1)
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logPath := filepath.Join(e.work, "plainhttp.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command("/bin/sh", "-c", `ulimit -n "$1" && shift && exec "$@"`, "sh", strconv.Itoa(o.ulimit),
		filepath.Join(e.work, "plainhttp"), "-addr", addr)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	m := &idleInstance{cmd: cmd, pid: cmd.Process.Pid, addr: addr, logPath: logPath} // sh execs plainhttp
	if err := waitUp("http://"+addr+"/", 30*time.Second); err != nil {
		m.stop()
		return nil, fmt.Errorf("plainhttp did not come up (log: %s): %w", logPath, err)
	}
	return m, nil
}

// rssKiB reads a process's resident memory (VmRSS) in KiB.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
