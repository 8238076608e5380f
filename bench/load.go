package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// result is one load run against one target.
type result struct {
	total     int
	ok        int
	failures  map[string]int // by kind: an HTTP status or a network error
	latencies []time.Duration
	wall      time.Duration
	first     time.Duration // when the first answer arrived
	last      time.Duration // when the last answer arrived
	// cpu is the proxy's own CPU time, user and system, over the load,
	// when hasCPU (Linux).
	cpu    time.Duration
	user   time.Duration // of cpu, in user mode
	hasCPU bool
}

// throughput is answers per second over the whole run, the client's own
// start-up included.
func (r result) throughput() float64 { return float64(r.ok) / r.wall.Seconds() }

// steady is answers per second from the first answer to the last: the
// rate once the load generator has its connections going. With 1000
// clients opening connections at once on 2 cores, the first answer comes
// ~0.1-0.3 s late even from a bare replica with no proxy in front.
func (r result) steady() float64 {
	if r.ok < 2 || r.last <= r.first {
		return 0
	}
	return float64(r.ok-1) / (r.last - r.first).Seconds()
}

// percentile returns the p-th percentile latency of the answered requests.
func (r result) percentile(p int) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := (len(r.latencies)*p + 99) / 100
	return r.latencies[min(max(i-1, 0), len(r.latencies)-1)]
}

func (r result) line() string {
	var kinds []string
	for k, n := range r.failures {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(kinds)
	return fmt.Sprintf("ok=%d/%d throughput=%.0f/s steady=%.0f/s p50=%s p99=%s first=%s wall=%s failed=[%s]", r.ok, r.total, r.throughput(), r.steady(),
		r.percentile(50).Round(100*time.Microsecond), r.percentile(99).Round(100*time.Microsecond),
		r.first.Round(time.Millisecond), r.wall.Round(time.Millisecond), strings.Join(kinds, " "))
}

// runLoad sends total POSTs of body from clients goroutines; each client
// sends its next request when the previous one is answered.
func runLoad(ctx context.Context, url string, body []byte, clients, total int, keepAlive bool) result {
	tr := &http.Transport{
		Proxy:               nil,
		DisableKeepAlives:   !keepAlive,
		MaxIdleConnsPerHost: clients,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 120 * time.Second}
	send := func() string { return post(ctx, client, url, body) }
	if !keepAlive {
		// A connection per request, as the original load-test client: written by hand,
		// since net/http's client spends two goroutines and two buffers on
		// each connection, CPU the proxies under test then lack.
		raw, err := newRawPoster(url, body)
		if err != nil {
			return result{total: total, failures: map[string]int{err.Error(): total}}
		}
		send = raw.post
	}

	var next atomic.Int64
	var mu sync.Mutex
	res := result{total: total, failures: map[string]int{}}
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(total) {
				t0 := time.Now()
				kind := send()
				d := time.Since(t0)
				mu.Lock()
				if kind == "" {
					if res.ok == 0 {
						res.first = time.Since(start)
					}
					res.ok++
					res.last = time.Since(start)
					res.latencies = append(res.latencies, d)
				} else {
					res.failures[kind]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.wall = time.Since(start)
	sort.Slice(res.latencies, func(i, j int) bool { return res.latencies[i] < res.latencies[j] })
	return res
}

// post sends one request and returns "" for a 200 with its whole body read,
// else the kind of failure.
func post(ctx context.Context, client *http.Client, url string, body []byte) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return errorKind(err)
	}
	return answer(resp)
}

// answer reads resp's body whole and returns "" for a 200, else the kind
// of failure.
func answer(resp *http.Response) string {
	_, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return strconv.Itoa(resp.StatusCode)
	}
	if err != nil {
		return errorKind(err)
	}
	return ""
}

func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	default:
		return "error"
	}
}

// rawPoster sends one POST per TCP connection with Connection: close.
type rawPoster struct {
	addr string
	head []byte // request line and headers, then the body
}

func newRawPoster(rawURL string, body []byte) (*rawPoster, error) {
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		u.RequestURI(), u.Host, len(body))
	return &rawPoster{addr: u.Host, head: append([]byte(head), body...)}, nil
}

func (p *rawPoster) post() string {
	conn, err := net.DialTimeout("tcp", p.addr, 30*time.Second)
	if err != nil {
		return errorKind(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(120 * time.Second))
	if _, err := conn.Write(p.head); err != nil {
		return errorKind(err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 4096), nil)
	if err != nil {
		return errorKind(err)
	}
	return answer(resp)
}
