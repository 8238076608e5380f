package tune

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Request is the request a sweep sends, over and over.
type Request struct {
	Method string
	// Target is the path, with its query if any.
	Target string
	Header http.Header
	// Host, when set, is the Host header; else the proxy's address.
	Host string
	Body []byte
}

// Load is a measurement's load: Clients closed-loop clients, each sending
// the next request as soon as its last is answered, for Warmup (not
// counted) and then Duration (counted).
type Load struct {
	Clients  int
	Warmup   time.Duration
	Duration time.Duration
}

// Measurement is what Drive counts over Load.Duration.
type Measurement struct {
	Requests  int // answered 2xx or 3xx within the window
	Errors    int // answered 4xx or 5xx, or failed, within the window
	Seconds   float64
	P50, P99  time.Duration // of the requests answered without error
	FirstFail string        // the first error, to say what went wrong
}

// Throughput is the successful requests a second.
func (m Measurement) Throughput() float64 {
	if m.Seconds <= 0 {
		return 0
	}
	return float64(m.Requests) / m.Seconds
}

// sample is one request's outcome.
type sample struct {
	end     time.Time
	latency time.Duration
	fail    string // "" when it succeeded
}

// Drive sends req to baseURL (http://host:port) from load.Clients
// closed-loop clients over load.Warmup then load.Duration, and measures
// the requests that ended within the Duration. It returns early, with
// ctx's error, if ctx ends first; a request cut off by the end of the
// window is not counted.
func Drive(ctx context.Context, baseURL string, req Request, load Load) (Measurement, error) {
	if load.Clients < 1 {
		return Measurement{}, errors.New("no clients")
	}
	transport := &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        load.Clients,
		MaxIdleConnsPerHost: load.Clients,
		DisableCompression:  true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	start := time.Now()
	from, until := start.Add(load.Warmup), start.Add(load.Warmup+load.Duration)
	runCtx, cancel := context.WithDeadline(ctx, until)
	defer cancel()

	samples := make([][]sample, load.Clients)
	var wg sync.WaitGroup
	for i := range load.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				s := send(runCtx, client, baseURL, req)
				if runCtx.Err() != nil {
					return // cut off by the end: neither a success nor a failure
				}
				if !s.end.Before(from) {
					samples[i] = append(samples[i], s)
				}
				if s.fail != "" {
					// A server that fails at once would be hammered: the
					// pause keeps an error count from being a loop's speed.
					select {
					case <-runCtx.Done():
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Measurement{}, err
	}
	return summarize(slices.Concat(samples...), load.Duration), nil
}

// send sends req once and reads the whole answer.
func send(ctx context.Context, client *http.Client, baseURL string, req Request) sample {
	t := time.Now()
	r, err := http.NewRequestWithContext(ctx, req.Method, baseURL+req.Target, bytes.NewReader(req.Body))
	if err != nil {
		return sample{end: time.Now(), fail: err.Error()}
	}
	if req.Body == nil {
		r.Body, r.ContentLength = nil, 0
	}
	r.Header = req.Header.Clone()
	if req.Host != "" {
		r.Host = req.Host
	}
	resp, err := client.Do(r)
	if err != nil {
		return sample{end: time.Now(), fail: err.Error()}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	s := sample{end: time.Now()}
	s.latency = s.end.Sub(t)
	switch {
	case err != nil:
		s.fail = fmt.Sprintf("reading the answer: %v", err)
	case resp.StatusCode >= 400:
		s.fail = fmt.Sprintf("answered %s", resp.Status)
	}
	return s
}

// summarize counts samples over a window of d.
func summarize(samples []sample, d time.Duration) Measurement {
	m := Measurement{Seconds: d.Seconds()}
	var lat []time.Duration
	slices.SortFunc(samples, func(a, b sample) int { return a.end.Compare(b.end) })
	for _, s := range samples {
		if s.fail != "" {
			m.Errors++
			if m.FirstFail == "" {
				m.FirstFail = s.fail
			}
			continue
		}
		m.Requests++
		lat = append(lat, s.latency)
	}
	slices.Sort(lat)
	m.P50, m.P99 = percentile(lat, 0.50), percentile(lat, 0.99)
	return m
}

// percentile is the p-quantile of sorted (nearest rank), 0 when empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
