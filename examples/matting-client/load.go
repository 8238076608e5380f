package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mattingctl/mattingctl/examples/sample"
)

// payload is one image ready to send.
type payload struct {
	name string // file name, for naming outputs
	body []byte // the JSON request body
}

// loadPayloads reads the image at path, or every .png/.jpg/.jpeg in the
// directory at path, and builds request bodies the way the original Python
// client does: {"image": "<base64>", "bg": "[33, 150, 242]"}.
func loadPayloads(path, bg string) ([]payload, error) {
	var rgb []int
	if err := json.Unmarshal([]byte(bg), &rgb); err != nil || len(rgb) != 3 || slices.ContainsFunc(rgb, func(v int) bool { return v < 0 || v > 255 }) {
		return nil, fmt.Errorf("-bg %q: want 3 integers 0-255 like [33, 150, 242]", bg)
	}
	if path == "" {
		body, err := json.Marshal(map[string]string{"image": base64.StdEncoding.EncodeToString(sample.JPEG), "bg": bg})
		return []payload{{name: "sample.jpg", body: body}}, err
	}
	files := []string{path}
	if st, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("reading -image: %w", err)
	} else if st.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("reading -image: %w", err)
		}
		files = files[:0]
		for _, e := range entries {
			switch strings.ToLower(filepath.Ext(e.Name())) {
			case ".png", ".jpg", ".jpeg":
				if !e.IsDir() {
					files = append(files, filepath.Join(path, e.Name()))
				}
			}
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("no .png, .jpg or .jpeg files in %s", path)
		}
	}
	var out []payload
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading -image: %w", err)
		}
		body, err := json.Marshal(map[string]string{"image": base64.StdEncoding.EncodeToString(data), "bg": bg})
		if err != nil {
			return nil, err
		}
		out = append(out, payload{name: filepath.Base(f), body: body})
	}
	return out, nil
}

// send posts one request and returns the result PNG and the time from
// sending the request to reading the whole response.
func send(ctx context.Context, client *http.Client, url string, p payload) ([]byte, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(p.body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	latency := time.Since(start)
	if err != nil {
		return nil, latency, fmt.Errorf("reading response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, latency, fmt.Errorf("status %d: %s", resp.StatusCode, errorText(body))
	}
	var r struct {
		Result *string `json:"result"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Result == nil {
		return nil, latency, fmt.Errorf("response has no \"result\": %s", errorText(body))
	}
	img, err := base64.StdEncoding.DecodeString(*r.Result)
	if err != nil {
		return nil, latency, fmt.Errorf("result is not base64: %w", err)
	}
	if _, err := png.Decode(bytes.NewReader(img)); err != nil {
		return nil, latency, fmt.Errorf("result is not a PNG: %w", err)
	}
	return img, latency, nil
}

// errorText is the "error" of a JSON error body, or the start of the body.
func errorText(body []byte) string {
	var e struct{ Error string }
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.Join(strings.Fields(string(body)), " ")
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}

// result is the outcome of request index i.
type result struct {
	latency time.Duration
	err     error
}

// sink receives each good result image; request i sent payload p.
type sink func(i int, p payload, png []byte) error

// run sends n requests, cycling through payloads, from c concurrent workers,
// and returns the results in request order and the wall time taken.
// Requests not started when ctx ends are left out.
func run(ctx context.Context, client *http.Client, url string, payloads []payload, n, c int, out sink) ([]result, time.Duration) {
	results := make([]result, n)
	started := make([]bool, n)
	next := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range min(c, n) {
		wg.Go(func() {
			for i := range next {
				p := payloads[i%len(payloads)]
				img, lat, err := send(ctx, client, url, p)
				if err == nil && out != nil {
					err = out(i, p, img)
				}
				results[i] = result{latency: lat, err: err}
			}
		})
	}
dispatch:
	for i := range n {
		select {
		case next <- i:
			started[i] = true
		case <-ctx.Done():
			break dispatch
		}
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	var done []result
	for i, r := range results {
		if started[i] {
			done = append(done, r)
		}
	}
	return done, elapsed
}

// summary is the one-line report of a run.
func summary(results []result, elapsed time.Duration) string {
	var lat []time.Duration
	for _, r := range results {
		if r.err == nil {
			lat = append(lat, r.latency)
		}
	}
	slices.Sort(lat)
	ok := len(lat)
	return fmt.Sprintf("requests=%d ok=%d failed=%d throughput=%.1f req/s p50=%s p99=%s max=%s",
		len(results), ok, len(results)-ok, float64(ok)/elapsed.Seconds(),
		fmtDuration(percentile(lat, 0.50)), fmtDuration(percentile(lat, 0.99)), fmtDuration(percentile(lat, 1)))
}

// percentile returns the nearest-rank percentile p (0-1] of sorted, or -1
// if sorted is empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return -1
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(100 * time.Microsecond).String()
	}
}

// errorCounts lists distinct error messages in order of first appearance,
// each with how often it occurred.
func errorCounts(results []result) []string {
	count := map[string]int{}
	var order []string
	for _, r := range results {
		if r.err == nil {
			continue
		}
		msg := r.err.Error()
		if count[msg] == 0 {
			order = append(order, msg)
		}
		count[msg]++
	}
	lines := make([]string, len(order))
	for i, msg := range order {
		lines[i] = fmt.Sprintf("%dx %s", count[msg], msg)
	}
	return lines
}
