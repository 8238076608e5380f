package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// slowReaders is attack 1: 16 HTTP/1.1 connections that ask for a 20 MiB
// response and never read it, and one HTTP/2 connection whose
// flow-control window is zero with 16 streams asking the same, against
// 16 slots, with --send-timeout 10s (the default is a minute, past the
// attack's 30 s). It lasts until the send timeout has broken off every
// attack response, or 30 s. Bound: legitimate requests at least 99% 200,
// RSS at most 300 MB, and no replica slot held as long as the send
// timeout (the status's oldest request in flight, polled every 100 ms).
func slowReaders(ctx context.Context, e *environment, _ attackOptions) (attackRow, error) {
	const sendTimeout = 10 * time.Second
	const attackers, size = 16, 20 << 20
	t, err := e.startTarget(ctx, "slowreaders", 0, []string{"--send-timeout", sendTimeout.String()}, nil)
	if err != nil {
		return attackRow{}, err
	}
	defer t.stop()
	held, stopWatch := t.watchHeld(ctx)
	defer stopWatch()
	legit := startLegit(ctx, t.url("/legit"))
	defer legit.finish()
	sleepCtx(ctx, 300*time.Millisecond) // legitimate traffic first

	began := time.Now()
	path := "/?size=" + strconv.Itoa(size)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range attackers {
		c, err := testutil.NonReadingGet(t.addr(), path)
		if err != nil {
			return attackRow{}, fmt.Errorf("slow reader: %w", err)
		}
		conns = append(conns, c)
	}
	h2, err := testutil.DialH2(t.addr(), 0)
	if err != nil {
		return attackRow{}, fmt.Errorf("zero-window HTTP/2 connection: %w", err)
	}
	defer h2.Close()
	for range attackers {
		if _, err := h2.Get(path); err != nil {
			return attackRow{}, fmt.Errorf("zero-window HTTP/2 stream: %w", err)
		}
	}
	var st control.Status
	for time.Since(began) < 30*time.Second && sleepCtx(ctx, 100*time.Millisecond) {
		if s, err := t.status(ctx); err == nil {
			if st = s; st.SendTimeouts >= 2*attackers {
				break
			}
		}
	}
	lasted := time.Since(began)
	row := attackRow{attack: "slow readers: 16 HTTP/1.1 never reading 20 MiB + 1 HTTP/2 zero window × 16 streams, --send-timeout 10s"}
	row.legit = legit.finish()
	row.rss = t.peakRSS()
	longest := held()
	row.bound = fmt.Sprintf("longest a replica slot was held: %s (bound: under --send-timeout %s); %d of %d attack responses broken off by it within %s",
		longest, sendTimeout, st.SendTimeouts, 2*attackers, lasted.Round(100*time.Millisecond))
	row.checkCommon(99, 300<<20)
	if longest >= sendTimeout {
		row.unmet("a slot held %s", longest)
	}
	return row, nil
}

// watchHeld polls the instance's status every 100 ms for its replicas'
// oldest request in flight; longest gives the most seen so far, and stop
// ends the polling.
func (t *target) watchHeld(ctx context.Context) (longest func() time.Duration, stop func()) {
	var ms atomic.Int64
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for sleepCtx(ctx, 100*time.Millisecond) {
			st, err := t.status(ctx)
			if err != nil {
				continue
			}
			for _, r := range st.Replicas {
				if r.OldestInflightMs > ms.Load() {
					ms.Store(r.OldestInflightMs)
				}
			}
		}
	}()
	return func() time.Duration { return time.Duration(ms.Load()) * time.Millisecond },
		func() { cancel(); <-done }
}

// slowUploads is attack 3: 70 HTTP/2 connections from 127.0.0.1, each
// with o.uploadStreams streams that declare a 50 MiB body and send a
// byte every 25 s, each stream opened again 2 s after it ends, at default
// flags; the legitimate client POSTs from 127.0.0.2 for 23 s from the
// attack's second 2, so that the held streams' --upload-grace (20 s) ends
// within the attack. Bound: legitimate requests at least 99% 200.
func slowUploads(ctx context.Context, e *environment, o attackOptions) (attackRow, error) {
	const conns = 70
	t, err := e.startTarget(ctx, "slowuploads", 0, nil, nil)
	if err != nil {
		return attackRow{}, err
	}
	defer t.stop()
	actx, cancel := context.WithCancel(ctx)
	var attack sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[string]int{} // the slow streams' answers: a status or a network error
	var opened atomic.Int64
	var transports []*http2.Transport
	defer func() {
		cancel()
		attack.Wait()
		for _, tr := range transports {
			tr.CloseIdleConnections()
		}
	}()
	for range conns {
		d := testutil.FromAddr("127.0.0.1")
		tr := &http2.Transport{
			AllowHTTP:                  true,
			StrictMaxConcurrentStreams: true, // one connection
			DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
		}
		transports = append(transports, tr)
		c := &http.Client{Transport: tr}
		for range o.uploadStreams {
			attack.Add(1)
			go func() {
				defer attack.Done()
				for actx.Err() == nil {
					body := testutil.NewDrip(25 * time.Second)
					req, _ := http.NewRequestWithContext(actx, http.MethodPost, t.url("/slow"), body)
					req.ContentLength = 50 << 20
					opened.Add(1)
					kind := ""
					resp, err := c.Do(req)
					if err == nil {
						kind = strconv.Itoa(resp.StatusCode)
						resp.Body.Close()
					} else {
						kind = errorKind(err)
					}
					body.Close()
					if actx.Err() == nil {
						mu.Lock()
						outcomes[kind]++
						mu.Unlock()
					}
					sleepCtx(actx, 2*time.Second)
				}
			}()
		}
	}
	sleepCtx(ctx, 2*time.Second) // the streams are open
	legit := startLegit(ctx, t.url("/legit"))
	defer legit.finish()
	sleepCtx(ctx, 23*time.Second)
	row := attackRow{attack: fmt.Sprintf("slow uploads: 70 HTTP/2 connections from 127.0.0.1 × %d streams declaring 50 MiB, a byte every 25 s; legit from 127.0.0.2", o.uploadStreams)}
	row.legit = legit.finish()
	row.rss = t.peakRSS()
	st, err := t.status(ctx)
	if err != nil {
		return row, err
	}
	mu.Lock()
	answered := byKind(outcomes)
	mu.Unlock()
	row.bound = fmt.Sprintf("bound: legit ≥ 99%% 200; legit p50 %s, p99 %s; %d slow streams opened in 25 s, ended by %s; status's client_limited %d",
		row.legit.percentile(50).Round(time.Millisecond), row.legit.percentile(99).Round(time.Millisecond), opened.Load(), answered, st.ClientLimited)
	row.checkCommon(99, 0)
	return row, nil
}
