package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// The attack scenario (`go run ./bench -scenario attack`, mattingctl
// alone) runs each hostile client of docs/benchmarks.md against a fresh `mattingctl
// up` of 2 fakemodel replicas on 127.0.0.1, with a legitimate client
// beside it (legit.go: 8 keep-alive connections from 127.0.0.2 POSTing
// 1 KB), and prints a row per attack: the legitimate requests sent and
// the share answered 200, mattingctl's peak RSS (VmHWM, from /proc) and
// the attack's own bound. Each attack lasts at most 30 s, the whole
// scenario at most 5 minutes; each instance is stopped when its attack
// ends, and is killed with its replicas if the bench dies.

// attackOptions configure the attack scenario.
type attackOptions struct {
	// resetFor is how long the rapid-reset attacker sends, at most 30 s.
	resetFor time.Duration
	// uploadStreams is the slow uploads' streams per HTTP/2 connection.
	uploadStreams int
}

// attackRow is one attack's line in the table.
type attackRow struct {
	attack string
	legit  legitResult
	rss    int64  // mattingctl's peak resident memory, bytes
	bound  string // what the attack's own bound measured, against the bound
	met    []string
}

// unmet records that a bound was not met, in words.
func (r *attackRow) unmet(format string, args ...any) {
	r.met = append(r.met, fmt.Sprintf(format, args...))
}

// checkCommon checks the bounds most attacks share: legitimate requests
// at least minPercent answered 200, and, with maxRSS, the peak RSS.
func (r *attackRow) checkCommon(minPercent float64, maxRSS int64) {
	if r.legit.sent == 0 || r.legit.percent() < minPercent {
		r.unmet("legit %.2f%% < %.0f%%", r.legit.percent(), minPercent)
	}
	if maxRSS > 0 && r.rss > maxRSS {
		r.unmet("RSS %d MB > %d MB", r.rss>>20, maxRSS>>20)
	}
}

// attackCase is one attack: run starts its own instance, attacks it
// beside a legitimate client, stops it and reports.
type attackCase struct {
	name string
	run  func(ctx context.Context, e *environment, o attackOptions) (attackRow, error)
}

var attackCases = []attackCase{
	{"slow readers", slowReaders},
	{"poison", poison},
	{"slow uploads", slowUploads},
	{"rapid reset", rapidReset},
	{"rapid reset, reconnecting", rapidResetReconnecting},
	{"idle admin connections", idleAdminConns},
	{"WebSockets", webSockets},
}

// scenarioBudget bounds the whole scenario; attackBudget one attack with
// its instance's start and stop.
const (
	scenarioBudget = 5 * time.Minute
	attackBudget   = 60 * time.Second
)

func runAttacks(e *environment, o attackOptions) error {
	if o.resetFor <= 0 || o.resetFor > 30*time.Second {
		return fmt.Errorf("-rapid-reset %s: want more than 0 and at most 30s", o.resetFor)
	}
	if o.uploadStreams < 1 {
		return fmt.Errorf("-upload-streams %d: want at least 1", o.uploadStreams)
	}
	// Ctrl-C ends the attack under way and stops its instance.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, scenarioBudget)
	defer cancel()
	began := time.Now()
	fmt.Printf("## attack: hostile clients, each against a fresh `mattingctl up -r %d` of fakemodel on 127.0.0.1, "+
		"a legitimate client beside (%d keep-alive connections from %s, 1 KB POSTs)\n\nload average before: %s\n\n",
		attackReplicas, legitClients, legitFrom, loadAverage())
	var rows []attackRow
	failed := 0
	for _, a := range attackCases {
		actx, cancel := context.WithTimeout(ctx, attackBudget)
		t0 := time.Now()
		row, err := a.run(actx, e, o)
		cancel()
		if err != nil {
			failed++
			row = attackRow{attack: a.name, bound: "did not run: " + err.Error()}
			row.unmet("error")
		}
		if row.attack == "" {
			row.attack = a.name
		}
		fmt.Printf("%s: %s; legit %d sent, %d answered 200 (p50 %s, p99 %s; failed: %s); peak RSS %d MB; %s\n\n",
			row.attack, time.Since(t0).Round(100*time.Millisecond), row.legit.sent, row.legit.ok,
			row.legit.percentile(50).Round(100*time.Microsecond), row.legit.percentile(99).Round(100*time.Microsecond),
			row.legit.failed(), row.rss>>20, row.bound)
		rows = append(rows, row)
		if ctx.Err() != nil {
			break
		}
	}
	fmt.Println("| attack | legit requests sent | legit answered 200 | mattingctl peak RSS (MB) | the attack's own bound | bounds met |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, r := range rows {
		met := "yes"
		if len(r.met) > 0 {
			met = "no: " + strings.Join(r.met, "; ")
		}
		fmt.Printf("| %s | %d | %.2f%% | %d | %s | %s |\n", r.attack, r.legit.sent, r.legit.percent(), r.rss>>20, r.bound, met)
	}
	fmt.Printf("\nwhole scenario: %s; load average after: %s\n", time.Since(began).Round(time.Second), loadAverage())
	if ctx.Err() != nil {
		return fmt.Errorf("the scenario stopped early (%v): %d of %d attacks ran", context.Cause(ctx), len(rows), len(attackCases))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d attacks did not run", failed, len(attackCases))
	}
	return nil
}

// sleepCtx waits d, or less if ctx ends first; it reports whether the
// whole d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
