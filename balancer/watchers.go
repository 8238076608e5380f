package balancer

import (
	"sync"
	"time"
)

// checksPerTimeout is how many times the watchdogs are checked within the
// shorter of the two timeouts they keep: an operation is ended between
// its timeout and an eighth more after it began.
const checksPerTimeout = 8

// watchers checks the watchdogs of the requests in progress, every
// period, from one goroutine: a timer per request would cost an ordinary
// request more than the rest of its watch. The goroutine is started when
// a request first begins a read or write, and ends once it has had
// nothing to watch for two periods, or at close.
type watchers struct {
	period time.Duration
	stop   chan struct{}  // closed by close
	ran    sync.WaitGroup // run's goroutine, for close to wait for

	// mu guards the fields below and every listed watchdog's prev and next.
	mu      sync.Mutex
	first   *watchdog // the listed watchdogs, newest first
	running bool      // run's goroutine is running
	closed  bool      // close was called: no goroutine is started again
}

// newWatchers returns the watchers of requests whose reads time out after
// readTimeout, and writes after sendTimeout.
func newWatchers(readTimeout, sendTimeout time.Duration) *watchers {
	return &watchers{
		period: max(min(readTimeout, sendTimeout)/checksPerTimeout, time.Millisecond),
		stop:   make(chan struct{}),
	}
}

// limit is the checks in a row that find an operation in progress which
// show that it has been for timeout.
func (ws *watchers) limit(timeout time.Duration) int {
	return int((timeout + ws.period - 1) / ws.period)
}

// add lists d, and starts the checks if they had stopped.
func (ws *watchers) add(d *watchdog) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	d.prev, d.next = nil, ws.first
	if ws.first != nil {
		ws.first.prev = d
	}
	ws.first = d
	if !ws.running && !ws.closed {
		ws.running = true
		ws.ran.Add(1)
		go ws.run()
	}
}

// remove takes d, which add listed, off the list.
func (ws *watchers) remove(d *watchdog) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if d.prev != nil {
		d.prev.next = d.next
	} else {
		ws.first = d.next
	}
	if d.next != nil {
		d.next.prev = d.prev
	}
	d.prev, d.next = nil, nil
}

// close stops the checks and waits for their goroutine to end. The
// proxy calls it once its server has stopped: no request is left to
// watch.
func (ws *watchers) close() {
	ws.mu.Lock()
	if !ws.closed {
		ws.closed = true
		close(ws.stop)
	}
	ws.mu.Unlock()
	ws.ran.Wait()
}

// run checks every listed watchdog each period, until the list has been
// empty for two periods or close is called.
func (ws *watchers) run() {
	defer ws.ran.Done()
	t := time.NewTicker(ws.period)
	defer t.Stop()
	var batch []*watchdog
	idle := 0
	for {
		select {
		case <-t.C:
		case <-ws.stop:
			ws.mu.Lock()
			ws.running = false
			ws.mu.Unlock()
			return
		}
		ws.mu.Lock()
		for d := ws.first; d != nil; d = d.next {
			batch = append(batch, d)
		}
		if len(batch) > 0 {
			idle = 0
		} else if idle++; idle == 2 {
			ws.running = false
			ws.mu.Unlock()
			return
		}
		ws.mu.Unlock()
		// Outside mu: ending an operation may take a moment (an HTTP/2
		// stream's reset goes through its connection's loop), and a
		// watchdog stopped meanwhile ends nothing.
		for _, d := range batch {
			d.check()
		}
		clear(batch)
		batch = batch[:0]
	}
}
