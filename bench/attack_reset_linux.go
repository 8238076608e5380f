package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// rapidReset is attack 4: one HTTP/2 connection that opens a stream and
// resets it at once, as fast as it can, for o.resetFor (30 s by default)
// or until mattingctl closes it, at default flags. Bound: RSS at most
// 300 MB, at most 1,000 cancelled requests reaching the replicas
// (fakemodel -order-log counts them), and legitimate throughput during
// the attack at least 50% of without.
func rapidReset(ctx context.Context, e *environment, o attackOptions) (attackRow, error) {
	return rapidResetAttack(ctx, e, o, false)
}

// rapidResetReconnecting is attack 4 by an attacker that opens a new
// connection each time mattingctl closes one, so that the attack lasts
// its whole o.resetFor. The bounds were set for one connection; they
// are checked here too, to show what the per-connection defence leaves.
func rapidResetReconnecting(ctx context.Context, e *environment, o attackOptions) (attackRow, error) {
	return rapidResetAttack(ctx, e, o, true)
}

// rapidResetAttack runs the legitimate client for 5 s before the attack
// and 5 s after it, for the throughput without (the two together, so
// that a shared machine's load that changes meanwhile weighs on both
// sides), and for the attack's whole o.resetFor, however soon mattingctl
// closes the attacker's connection.
func rapidResetAttack(ctx context.Context, e *environment, o attackOptions, reconnect bool) (attackRow, error) {
	name := "rapidreset"
	if reconnect {
		name += "-reconnecting"
	}
	orders := filepath.Join(e.work, "orders-"+name)
	t, err := e.startTarget(ctx, name, 0, nil, []string{"-order-log", orders})
	if err != nil {
		return attackRow{}, err
	}
	defer t.stop()
	var cpuWithout time.Duration // mattingctl's CPU time in the baselines
	baseline := func() legitResult {
		cpu := t.cpuTime()
		l := startLegit(ctx, t.url("/legit"))
		defer l.finish()
		sleepCtx(ctx, 5*time.Second)
		r := l.finish()
		cpuWithout += t.cpuTime() - cpu
		return r
	}
	before := baseline()

	cpu := t.cpuTime()
	legit := startLegit(ctx, t.url("/legit"))
	defer legit.finish()
	began := time.Now()
	end := began.Add(o.resetFor)
	var sent atomic.Int64
	conns, closed, dialErrs := 0, 0, 0
	var firstClosed time.Duration
	var firstStreams int64
	for time.Now().Before(end) && ctx.Err() == nil {
		conn, err := net.DialTimeout("tcp", t.addr(), 5*time.Second)
		if err != nil {
			dialErrs++
			sleepCtx(ctx, 10*time.Millisecond)
			continue
		}
		conns++
		// Writes that the server's flow control stops end with the attack.
		_ = conn.SetWriteDeadline(end.Add(time.Second))
		gone := make(chan struct{})
		go func() {
			defer close(gone)
			_, _ = io.Copy(io.Discard, conn) // never held by a full receive buffer
		}()
		err = testutil.RapidReset(conn, "/attack", end, &sent)
		if err != nil && time.Now().Before(end) { // a write failed: mattingctl closed it
			if closed++; closed == 1 {
				firstClosed, firstStreams = time.Since(began), sent.Load()
			}
		}
		conn.Close()
		<-gone
		if !reconnect {
			break
		}
	}
	sleepCtx(ctx, time.Until(end)) // the legitimate client's window is the attack's whole time
	during := legit.finish()
	cpuWith := t.cpuTime() - cpu
	after := baseline()

	sleepCtx(ctx, 500*time.Millisecond) // the replicas have logged what reached them
	log, err := os.ReadFile(orders)
	if err != nil && !os.IsNotExist(err) {
		return attackRow{}, err
	}
	reached := strings.Count(string(log), " start GET /attack")
	row := attackRow{legit: during, rss: t.peakRSS()}
	var how string
	if reconnect {
		row.attack = fmt.Sprintf("rapid reset, reconnecting: HTTP/2 connections one at a time, each opening and resetting streams until closed, for %s", o.resetFor)
		how = fmt.Sprintf("%d connections, %d closed by mattingctl, %d streams in all (%d dial errors)", conns, closed, sent.Load(), dialErrs)
	} else {
		row.attack = fmt.Sprintf("rapid reset: 1 HTTP/2 connection opening and resetting streams for %s", o.resetFor)
		how = fmt.Sprintf("the connection not closed by mattingctl, %d streams", sent.Load())
		if closed > 0 {
			how = fmt.Sprintf("the connection closed by mattingctl after %d streams, %s in", firstStreams, firstClosed.Round(time.Millisecond))
		}
	}
	rateWith := float64(during.ok) / during.wall.Seconds()
	rateWithout := float64(before.ok+after.ok) / (before.wall + after.wall).Seconds()
	ratio := 0.0
	if rateWithout > 0 {
		ratio = 100 * rateWith / rateWithout
	}
	row.bound = fmt.Sprintf("cancelled requests that reached the replicas: %d (bound: ≤ 1,000); %s; legit %.0f req/s against %.0f in 5 s before and 5 s after: %.0f%% (bound: ≥ 50%%); "+
		"mattingctl's CPU %.0f%% of a core, %.0f%% without",
		reached, how, rateWith, rateWithout, ratio, 100*cpuWith.Seconds()/during.wall.Seconds(), 100*cpuWithout.Seconds()/(before.wall+after.wall).Seconds())
	row.checkCommon(0, 300<<20)
	if reached > 1000 {
		row.unmet("%d reached replicas", reached)
	}
	if ratio < 50 {
		row.unmet("throughput %.0f%% < 50%%", ratio)
	}
	return row, nil
}
