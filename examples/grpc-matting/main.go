// Command grpc-matting is the examples' matting model behind a gRPC
// service (mattingpb/matting.proto), for mattingctl with
// --upstream-protocol h2c:
//
//	mattingctl up -r 4 --upstream-protocol h2c --health grpc -- bin/grpc-matting
//	bin/grpc-matting-client -c 64 -n 640
//
// It listens on 127.0.0.1:-port (default $PORT, else 9111), registers the
// standard health service (grpc.health.v1.Health), which reports SERVING
// once -ready-after has passed, and shuts down gracefully on SIGTERM or
// SIGINT, finishing calls in flight.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mattingctl/mattingctl/examples/grpc-matting/mattingpb"
)

// shutdownGrace bounds how long calls in flight may run after a signal.
const shutdownGrace = 60 * time.Second

// maxMessage is the largest request or reply, as matting-server's largest
// body.
const maxMessage = 50 << 20

type config struct {
	port       int
	delay      time.Duration
	workers    int
	readyAfter time.Duration
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, err := parseFlags(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "grpc-matting: %v\n", err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.port)))
	if err != nil {
		fmt.Fprintf(os.Stderr, "grpc-matting: %v\n", err)
		os.Exit(1)
	}
	if err := serve(ctx, ln, cfg, os.Getenv("MATTINGCTL_REPLICA"), os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "grpc-matting: %v\n", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line; getenv supplies PORT.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("grpc-matting", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	port := fs.String("port", "", "`port` to listen on, on 127.0.0.1 (default $PORT, else 9111)")
	fs.DurationVar(&cfg.delay, "delay", 0, "extra service `time` per call, to model a slower model")
	fs.IntVar(&cfg.workers, "workers", runtime.GOMAXPROCS(0), "calls matted at once; the rest wait")
	fs.DurationVar(&cfg.readyAfter, "ready-after", 0, "report NOT_SERVING to health checks for this `long` after start, as a model that is loading")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if cfg.workers < 1 {
		return config{}, fmt.Errorf("-workers is %d; want at least 1", cfg.workers)
	}
	if cfg.delay < 0 || cfg.readyAfter < 0 {
		return config{}, errors.New("-delay and -ready-after must not be negative")
	}
	what := "-port"
	if *port == "" {
		*port, what = getenv("PORT"), "PORT"
	}
	if *port == "" {
		*port = "9111"
	}
	n, err := strconv.Atoi(*port)
	if err != nil || n < 0 || n > 65535 {
		return config{}, fmt.Errorf("%s is %q; want a port number 0-65535", what, *port)
	}
	cfg.port = n
	return cfg, nil
}

// serve serves the matting and health services on ln until ctx is done,
// then stops accepting calls and waits up to shutdownGrace for those in
// flight. replica is mattingctl's replica number, if any.
func serve(ctx context.Context, ln net.Listener, cfg config, replica string, stderr io.Writer) error {
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(maxMessage), grpc.MaxSendMsgSize(maxMessage))
	port := ln.Addr().(*net.TCPAddr).Port
	name := "port " + strconv.Itoa(port)
	if replica != "" {
		name = "replica-" + replica
	}
	mattingpb.RegisterMattingServer(srv, newServer(cfg.workers, cfg.delay, name, port))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	setHealth := func(s healthpb.HealthCheckResponse_ServingStatus) {
		hs.SetServingStatus("", s)
		hs.SetServingStatus(mattingpb.Matting_ServiceDesc.ServiceName, s)
	}
	if cfg.readyAfter > 0 {
		setHealth(healthpb.HealthCheckResponse_NOT_SERVING)
		ready := time.AfterFunc(cfg.readyAfter, func() { setHealth(healthpb.HealthCheckResponse_SERVING) })
		defer ready.Stop()
	} else {
		setHealth(healthpb.HealthCheckResponse_SERVING)
	}

	fmt.Fprintf(stderr, "grpc-matting listening on %s (h2c)\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	hs.Shutdown() // NOT_SERVING from now on
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
		return nil
	case <-time.After(shutdownGrace):
		srv.Stop()
		return errors.New("shutting down: calls still in flight after " + shutdownGrace.String())
	}
}
