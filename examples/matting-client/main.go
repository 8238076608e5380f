// Command matting-client sends images to a matting server and checks the
// answers: a Go version of the load-test client of the original nginx setup.
//
// Send one image and keep the matted result:
//
//	matting-client -n 1 -out out.png
//
// Load test with 450 requests at once, as the original load test did:
//
//	matting-client -n 450
//
// It prints one summary line, with latency percentiles over the successful
// requests and throughput as successful requests per second of wall time,
// then up to five distinct errors. It exits 1 if any request failed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

type config struct {
	url, image, bg, out string
	n, c                int
	timeout             time.Duration
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(realMain(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("matting-client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	fs.StringVar(&cfg.url, "url", "http://127.0.0.1:9110/api/matting_base64", "matting endpoint `URL`")
	fs.StringVar(&cfg.image, "image", "", "image `file`, or a directory whose .png/.jpg files are sent in turn (default: the built-in sample portrait)")
	fs.StringVar(&cfg.bg, "bg", "[33, 150, 242]", "background colour as a JSON array of 3 integers 0-255")
	fs.IntVar(&cfg.n, "n", 1, "total requests")
	fs.IntVar(&cfg.c, "c", 0, "concurrent requests (default n: one per request, like the original client)")
	fs.StringVar(&cfg.out, "out", "", "write the first result to this PNG `file`; if it is a directory or ends in /, write every result there")
	fs.DurationVar(&cfg.timeout, "timeout", 2*time.Minute, "per-request timeout")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	switch {
	case fs.NArg() > 0:
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case cfg.n < 1:
		return config{}, fmt.Errorf("-n is %d; want at least 1", cfg.n)
	case cfg.c < 0:
		return config{}, fmt.Errorf("-c is %d; want at least 1, or 0 for n", cfg.c)
	case cfg.timeout <= 0:
		return config{}, fmt.Errorf("-timeout is %v; want more than 0", cfg.timeout)
	}
	if cfg.c == 0 || cfg.c > cfg.n {
		cfg.c = cfg.n
	}
	return cfg, nil
}

// realMain runs the client and returns the exit code: 0 if every request
// succeeded, 1 if any failed, 2 for bad usage.
func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "matting-client: %v\n", err)
		return 2
	}
	payloads, err := loadPayloads(cfg.image, cfg.bg)
	if err != nil {
		fmt.Fprintf(stderr, "matting-client: %v\n", err)
		return 2
	}
	out, flush, err := newSink(cfg.out)
	if err != nil {
		fmt.Fprintf(stderr, "matting-client: %v\n", err)
		return 2
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = cfg.c
	client := &http.Client{Transport: transport, Timeout: cfg.timeout}

	results, elapsed := run(ctx, client, cfg.url, payloads, cfg.n, cfg.c, out)
	fmt.Fprintln(stdout, summary(results, elapsed))
	errs := errorCounts(results)
	for i, e := range errs {
		if i == 5 {
			fmt.Fprintf(stdout, "... and %d more distinct errors\n", len(errs)-5)
			break
		}
		fmt.Fprintf(stdout, "error: %s\n", e)
	}
	if err := flush(); err != nil {
		fmt.Fprintf(stderr, "matting-client: %v\n", err)
		return 1
	}
	if len(errs) > 0 || len(results) < cfg.n {
		return 1
	}
	return 0
}

// newSink returns where result images go for -out: nowhere if path is
// empty; every result into a directory if path is one or ends in a slash;
// otherwise only the first successful result (lowest request number) into
// the file path, written by flush.
func newSink(path string) (out sink, flush func() error, err error) {
	noFlush := func() error { return nil }
	if path == "" {
		return nil, noFlush, nil
	}
	st, statErr := os.Stat(path)
	if strings.HasSuffix(path, "/") || strings.HasSuffix(path, string(filepath.Separator)) || (statErr == nil && st.IsDir()) {
		if err := os.MkdirAll(path, 0o755); err != nil {
			return nil, nil, fmt.Errorf("creating -out directory: %w", err)
		}
		return func(i int, p payload, img []byte) error {
			name := fmt.Sprintf("%04d_%s.png", i+1, strings.TrimSuffix(p.name, filepath.Ext(p.name)))
			if err := os.WriteFile(filepath.Join(path, name), img, 0o644); err != nil {
				return fmt.Errorf("writing result: %w", err)
			}
			return nil
		}, noFlush, nil
	}
	var mu sync.Mutex // guards first and firstIdx
	var first []byte
	firstIdx := -1
	out = func(i int, _ payload, img []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if firstIdx < 0 || i < firstIdx {
			first, firstIdx = img, i
		}
		return nil
	}
	flush = func() error {
		if first == nil {
			return nil
		}
		if err := os.WriteFile(path, first, 0o644); err != nil {
			return fmt.Errorf("writing result: %w", err)
		}
		return nil
	}
	return out, flush, nil
}
