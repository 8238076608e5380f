package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/sdnotify"
	"github.com/mattingctl/mattingctl/supervisor"
)

// errDetachUnderSystemd refuses `up -d` in a Type=notify service: systemd
// takes the process it started for the service's main process and waits
// for READY=1 from it, so a parent that returns once a detached copy is
// ready leaves systemd waiting for a message that would come from
// another pid (refused under NotifyAccess=main), then killing the copy
// as the rest of an exited service.
var errDetachUnderSystemd = errors.New("-d cannot run under systemd (" + sdnotify.SocketEnv + " is set): systemd watches the process it started, so the unit runs `mattingctl up` in the foreground; remove -d (mattingctl systemd-unit prints such a unit)")

// runInstance runs the instance until it stops. Under systemd (a
// Type=notify service: NOTIFY_SOCKET set) it also tells systemd, as
// sd_notify: READY=1 once every replica is ready, RELOADING=1 and then
// READY=1 around a reload or set that changes something, STOPPING=1 when
// the stop begins, a STATUS= line of the replicas ready, and WATCHDOG=1
// pings when the unit has WatchdogSec.
func runInstance(opts supervisor.Options, log hclog.Logger) error {
	n := sdnotify.New(log.Named("systemd"))
	if n == nil {
		return supervisor.Run(context.Background(), opts)
	}
	watchdog, err := sdnotify.WatchdogTimeout()
	if err != nil {
		log.Warn("ignoring systemd's watchdog", "error", err)
		watchdog = 0
	}
	log.Debug("telling systemd ready and stopping (sd_notify)", "watchdog", watchdog)
	opts.OnReady, opts.OnStopping = n.Ready, n.Stopping
	opts.OnReload = func(phase string) {
		if phase == supervisor.ReloadStarted {
			n.Reloading()
		} else {
			n.Reloaded()
		}
	}
	s, err := supervisor.New(opts)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Run(ctx, watchdog, func() string { return replicaCounts(s.Status()) })
	}()
	// Pinging until Run returns: systemd's watchdog still runs while the
	// service stops, and a stop may take --stop-timeout.
	defer func() { cancel(); <-done }()
	return s.Run(context.Background())
}

// replicaCounts is the STATUS= text: "3/4 replicas ready", or "" before
// the replicas are started.
func replicaCounts(st control.Status) string {
	if st.Desired == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%d replicas ready", st.Ready(), st.Desired)
}
