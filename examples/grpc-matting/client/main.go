// Command client sends matting calls to examples/grpc-matting, through
// mattingctl's proxy, with -c calls in flight at once on ONE connection
// (HTTP/2 multiplexes them), as a gRPC client in production does. It
// prints how many calls each replica served, which shows mattingctl
// balancing per call where a Kubernetes Service balances per connection:
//
//	client -c 64 -n 640
//	calls=640 ok=640 failed=0 throughput=92.1 calls/s p50=650ms p99=1.21s max=1.3s
//	replica-1  161  25.2%
//	replica-2  158  24.7%
//	...
//
// Failures are listed by status after the counts; it exits 1 if any call
// failed, 2 for bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/mattingctl/mattingctl/examples/grpc-matting/mattingpb"
)

type config struct {
	addr, image, out string
	bg               *mattingpb.Color
	n, c             int
	duration         time.Duration
	timeout          time.Duration
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(realMain(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:9110", "server `host:port`: mattingctl's proxy, or one replica")
	fs.StringVar(&cfg.image, "image", "", "PNG or JPEG `file` to send (default: the built-in sample portrait)")
	bg := fs.String("bg", "33,150,242", "background colour `R,G,B`, each 0-255")
	fs.IntVar(&cfg.n, "n", 1, "total calls")
	fs.IntVar(&cfg.c, "c", 1, "calls in flight at once, all on one connection")
	fs.DurationVar(&cfg.duration, "duration", 0, "keep calling for this `long` instead of making -n calls")
	fs.DurationVar(&cfg.timeout, "timeout", 2*time.Minute, "deadline of each call")
	fs.StringVar(&cfg.out, "out", "", "write the first result to this PNG `file`")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	switch {
	case fs.NArg() > 0:
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case cfg.n < 1:
		return config{}, fmt.Errorf("-n is %d; want at least 1", cfg.n)
	case cfg.c < 1:
		return config{}, fmt.Errorf("-c is %d; want at least 1", cfg.c)
	case cfg.duration < 0:
		return config{}, fmt.Errorf("-duration is %v; want 0 (use -n) or more", cfg.duration)
	case cfg.timeout <= 0:
		return config{}, fmt.Errorf("-timeout is %v; want more than 0", cfg.timeout)
	}
	c, err := parseColor(*bg)
	if err != nil {
		return config{}, fmt.Errorf("-bg %q: %v", *bg, err)
	}
	cfg.bg = c
	return cfg, nil
}

// parseColor reads R,G,B.
func parseColor(s string) (*mattingpb.Color, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return nil, errors.New("want three numbers R,G,B")
	}
	var v [3]uint32
	for i, p := range parts {
		n, err := strconv.ParseUint(strings.TrimSpace(p), 10, 8)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number 0-255", p)
		}
		v[i] = uint32(n)
	}
	return &mattingpb.Color{R: v[0], G: v[1], B: v[2]}, nil
}

// realMain runs the client and returns the exit code: 0 if every call
// succeeded, 1 if any failed, 2 for bad usage.
func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "client: %v\n", err)
		return 2
	}
	image, err := loadImage(cfg.image)
	if err != nil {
		fmt.Fprintf(stderr, "client: %v\n", err)
		return 2
	}
	results, elapsed, err := run(ctx, cfg, image)
	if err != nil {
		fmt.Fprintf(stderr, "client: %v\n", err)
		return 1
	}
	fmt.Fprint(stdout, report(results, elapsed))
	if cfg.out != "" {
		for _, r := range results {
			if r.err == nil {
				if err := os.WriteFile(cfg.out, r.png, 0o644); err != nil {
					fmt.Fprintf(stderr, "client: %v\n", err)
					return 1
				}
				break
			}
		}
	}
	for _, r := range results {
		if r.err != nil {
			return 1
		}
	}
	return 0
}
