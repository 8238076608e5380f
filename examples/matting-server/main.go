// Command matting-server is an example model server for mattingctl: it cuts
// the subject out of a photo and puts it on a plain background colour.
//
//	POST /api/matting_base64  {"image": "<base64 PNG or JPEG>", "bg": "[33, 150, 242]"}
//	                       -> {"result": "<base64 PNG>"}
//	GET  /health           -> {"status": "ok"}
//
// It listens on 127.0.0.1:$PORT (PORT defaults to 9111) and shuts down
// gracefully on SIGTERM or SIGINT, finishing requests in flight.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// shutdownGrace bounds how long in-flight requests may run after a signal.
const shutdownGrace = 60 * time.Second

type config struct {
	addr    string
	delay   time.Duration
	workers int
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, err := parseFlags(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "matting-server: %v\n", err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "matting-server: %v\n", err)
		os.Exit(1)
	}
	if err := serve(ctx, ln, newServer(cfg.workers, cfg.delay).routes(), os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "matting-server: %v\n", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line; getenv supplies PORT.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("matting-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	fs.StringVar(&cfg.addr, "addr", "", "listen `address` (default 127.0.0.1:$PORT, PORT defaulting to 9111)")
	fs.DurationVar(&cfg.delay, "delay", 0, "extra service `time` per matting request, to model a slower model")
	fs.IntVar(&cfg.workers, "workers", runtime.GOMAXPROCS(0), "matting requests processed at once; the rest wait")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if cfg.workers < 1 {
		return config{}, fmt.Errorf("-workers is %d; want at least 1", cfg.workers)
	}
	if cfg.delay < 0 {
		return config{}, fmt.Errorf("-delay is %v; want 0 or more", cfg.delay)
	}
	if cfg.addr == "" {
		port := getenv("PORT")
		if port == "" {
			port = "9111"
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return config{}, fmt.Errorf("PORT is %q; want a port number 0-65535", port)
		}
		cfg.addr = net.JoinHostPort("127.0.0.1", port)
	}
	return cfg, nil
}

// serve serves h on ln until ctx is done, then stops accepting connections
// and waits up to shutdownGrace for requests in flight to finish.
func serve(ctx context.Context, ln net.Listener, h http.Handler, stderr io.Writer) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute, // a 50 MiB body on a slow link
		IdleTimeout:       2 * time.Minute,
	}
	fmt.Fprintf(stderr, "matting-server listening on %s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}
