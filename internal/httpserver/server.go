// Package httpserver runs an http.Server whose shutdown returns only once
// every goroutine it started has ended: its Serve loop, and the goroutine
// of every connection, in which that connection's HTTP/1 handlers run.
// The control socket and the admin endpoints serve through it, and the
// proxy counts its connections with Conns, so that nothing of an instance
// outlives its Run.
package httpserver

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
)

// Server is an http.Server serving one listener in the background.
type Server struct {
	srv    *http.Server
	served chan struct{} // closed when Serve has returned
	conns  Conns
}

// Start serves srv on ln in a goroutine until Shutdown; serveErr, if not
// nil, is told of an error that ends Serve other than the shutdown. It
// takes srv's ConnState hook, which must be nil, for Conns.
func Start(srv *http.Server, ln net.Listener, serveErr func(error)) *Server {
	s := &Server{srv: srv, served: make(chan struct{})}
	srv.ConnState = s.conns.Track
	go func() {
		defer close(s.served)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) && serveErr != nil {
			serveErr(err)
		}
	}()
	return s
}

// Conns counts an http.Server's connections whose goroutine has not
// ended. Its Track is the server's ConnState hook.
type Conns struct {
	wg sync.WaitGroup
}

// Track counts a connection from its first state, which net/http sets
// before Serve can return, to its last, which it sets once the
// connection's goroutine is done with it. A hijacked connection is its
// handler's from then on.
func (c *Conns) Track(_ net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		c.wg.Add(1)
	case http.StateHijacked, http.StateClosed:
		c.wg.Done()
	}
}

// Wait waits, once Serve has returned, until every connection's goroutine
// has ended. Only a shutdown ends them all.
func (c *Conns) Wait() { c.wg.Wait() }

// Shutdown stops the server as http.Server.Shutdown does, waiting until
// ctx ends for the requests in flight; past ctx it closes the connections
// left, which cancels their requests. It returns Shutdown's error once
// Serve and every connection's goroutine have ended.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-s.served
	s.conns.Wait()
	return err
}
