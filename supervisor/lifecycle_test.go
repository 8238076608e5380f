//go:build unix

package supervisor

import (
	"context"
	"sync"
	"testing"
)

// lifecycle records OnReady and OnStopping calls.
type lifecycle struct {
	mu       sync.Mutex
	events   []string
	readyNow int // replicas ready when OnReady was called
}

func (l *lifecycle) add(e string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *lifecycle) get() ([]string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...), l.readyNow
}

// TestRunTellsReadyThenStopping: OnReady comes once every initial
// replica is ready, OnStopping once when the stop begins, each once.
func TestRunTellsReadyThenStopping(t *testing.T) {
	var l lifecycle
	var s *Supervisor
	s = newTestSupervisor(t, func(o *Options) {
		o.Replicas, o.Host, o.Admin = 2, "127.0.0.1", "none"
		o.OnReady = func() {
			n := s.Readiness().Ready
			l.mu.Lock()
			l.readyNow = n
			l.mu.Unlock()
			l.add("ready")
			s.Stop("test") // stop as soon as ready: OnStopping must follow
		}
		o.OnStopping = func() { l.add("stopping") }
	}, "serve")
	if err := s.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	events, readyNow := l.get()
	if len(events) != 2 || events[0] != "ready" || events[1] != "stopping" {
		t.Fatalf("calls = %v, want [ready stopping]", events)
	}
	if readyNow != 2 {
		t.Errorf("OnReady came with %d replicas ready, want 2", readyNow)
	}
}

// TestRunTellsStoppingAfterAFailedStart: a start that fails is a stop
// too, and never ready.
func TestRunTellsStoppingAfterAFailedStart(t *testing.T) {
	var l lifecycle
	s := newTestSupervisor(t, func(o *Options) {
		o.Host, o.Admin = "127.0.0.1", "none"
		o.OnReady = func() { l.add("ready") }
		o.OnStopping = func() { l.add("stopping") }
	}, "exit", "3")
	if err := s.Run(context.Background()); err == nil {
		t.Fatal("Run with a replica that exits succeeded")
	}
	if events, _ := l.get(); len(events) != 1 || events[0] != "stopping" {
		t.Fatalf("calls = %v, want [stopping]", events)
	}
}
