package balancer

import (
	"fmt"
	"net/http"
	"runtime/debug"
)

// net/http serves an HTTP/1 connection on one goroutine, and runs each of
// its requests' handler on that goroutine too. Proxying a request is deep
// (the policy, the queue, ReverseProxy, the transport), so the stack grows
// to 8 KiB and keeps that size while the connection then waits, idle, for
// its next request: the runtime halves a stack only while its goroutine
// uses less than a quarter of it, and a waiting connection's uses more
// than 2 KiB (measured: 8 KiB each, after two GCs). A keep-alive
// client that sent one request and stays connected thus cost 8 KiB of
// stack, as much as net/http's two 4 KiB buffers for it. Run on a
// goroutine of its own, as net/http runs every HTTP/2 stream's, a
// handler's stack is freed when it returns, and the connection's stays
// at 4 KiB (bench: go run ./bench -scenario idleconns -memory).

// ownGoroutine runs each HTTP/1 request's handler on a new goroutine, the
// connection's goroutine waiting for it. A panic in the handler is raised
// again on the connection's goroutine, where net/http recovers it as it
// does a handler's own: http.ErrAbortHandler as it is, any other with the
// handler's stack in its message.
type ownGoroutine struct{ next http.Handler }

func (o ownGoroutine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 1 {
		o.next.ServeHTTP(w, r) // already on a goroutine of its stream's own
		return
	}
	var p any
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if v := recover(); v != nil {
				p = handlerPanic(v)
			}
		}()
		o.next.ServeHTTP(w, r)
	}()
	<-done
	if p != nil {
		panic(p)
	}
}

// handlerPanic is what a handler's panic with v is raised as again: v
// itself for http.ErrAbortHandler, which net/http recognizes and does not
// log; otherwise v with the stack it was raised on, which the raising
// again would lose.
func handlerPanic(v any) any {
	if v == http.ErrAbortHandler {
		return v
	}
	return &panicked{value: v, stack: debug.Stack()}
}

// panicked is a handler's panic raised again on its connection's goroutine.
type panicked struct {
	value any
	stack []byte
}

func (p *panicked) Error() string {
	return fmt.Sprintf("%v\n\nhandler goroutine: %s", p.value, p.stack)
}

// Unwrap returns the handler's panic value when it is an error.
func (p *panicked) Unwrap() error {
	err, _ := p.value.(error)
	return err
}
