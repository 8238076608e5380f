// Command plainhttp is the least a Go HTTP/1.1 server can be: net/http's
// server with a handler that reads the body and answers 200 with a small
// JSON body, nothing else. It gives its free memory back to the system
// every -free (runtime.GC, then debug.FreeOSMemory), at least as often as
// mattingctl does.
//
// The bench runs it in place of mattingctl (`go run ./bench -scenario
// idleconns -memory -floor`) to measure what any proxy built on net/http's
// server pays for an idle keep-alive connection, and keeps after the
// connections close: the floor under mattingctl's own figures.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	every := flag.Duration("free", 10*time.Second, "give free memory back to the system this often (0: never)")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "plainhttp:", err)
		os.Exit(1)
	}
	fmt.Println("listening on", ln.Addr())
	if *every > 0 {
		go func() { // lives as long as the process
			for range time.Tick(*every) {
				runtime.GC()
				debug.FreeOSMemory()
			}
		}()
	}
	answer := []byte(`{"result":"ok"}`)
	err = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	}))
	fmt.Fprintln(os.Stderr, "plainhttp:", err)
	os.Exit(1)
}
