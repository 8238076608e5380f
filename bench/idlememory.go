package main

import (
	"fmt"
	"os"
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
func (e *environment) idleMemory(o idleConnsOptions) error {
	m, err := e.startIdle(o)
	if err != nil {
		return err
	}
	defer m.stop()
	st, _, err := m.status()
	if err != nil {
		return err
	}
	if o.conns > st.MaxConns {
		return fmt.Errorf("-conns %d is more than mattingctl's max_conns %d at ulimit -n %d: the rest would wait unanswered in the listen backlog", o.conns, st.MaxConns, o.ulimit)
	}
	time.Sleep(2 * time.Second) // past the start's last allocations
	before, err := rssKiB(m.pid)
	if err != nil {
		return err
	}
	fmt.Printf("mattingctl under ulimit -n %d, %d replicas at --max-inflight %d: max_conns %d\n", o.ulimit, replicas, st.MaxInflight, st.MaxConns)
	fmt.Printf("before: RSS %d KiB\n", before)

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
		st, _, _ = m.status()
		idle, err := rssKiB(m.pid)
		if err != nil {
			return err
		}
		perConn[i] = float64(idle-before) / float64(opened)
		fmt.Printf("idle for %s: conns %d, RSS %d KiB: %.1f KiB per connection (goal: at most %d)\n", d, st.Conns, idle, perConn[i], idleConnKiB)
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
		st, _, _ = m.status()
		fmt.Printf("%3.0f s after they closed: conns %d, RSS %d KiB, %.2f of before\n", at.Seconds(), st.Conns, rss, float64(rss)/float64(before))
	}
	fmt.Printf("\nKiB per idle connection: %.1f after %s, %.1f after %s (goal: at most %d)\n", perConn[0], idleSettle, perConn[1], idleSettleLong, idleConnKiB)
	fmt.Printf("RSS %s after they closed / before: %.2f, %+.1f MiB (goal: at most %.1f)\n", idleWatch, float64(rss)/float64(before), float64(rss-before)/1024, idleReturnRatio)
	return nil
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
