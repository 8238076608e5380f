// Command fakemodel is a stand-in model server for mattingctl's end-to-end
// tests and benchmarks. It listens on 127.0.0.1:$PORT and answers every
// request with JSON naming itself, after an optional service time.
//
// Query parameters: sleep=DURATION delays the answer; crash=1 makes the
// process exit abruptly without answering; stream=N writes N chunks, one
// every sleep; size=SIZE (bytes, or with KiB or MiB) answers that many
// bytes with a Content-Length, byte i being i%251; unlisten=1 closes the
// listening socket, so that connections are refused while the process
// lives on, as a wedged server's would be.
//
// /ws is a WebSocket endpoint that echoes every message.
//
// With -services 50ms,500ms replica 1 takes 50 ms, replica 2 500 ms,
// replica 3 50 ms again, and so on, in place of -service.
//
// With -service and -limit it emulates an overloaded model server: every
// request takes the service time, and past limit concurrent requests it
// drops the connection (a TCP reset), as a single Flask process does
// under a flood. With -log-requests it prints a line per request on
// stdout, as a web server's access log does, and blocks in that write when
// nobody reads its stdout. With -h2c it also speaks HTTP/2 over cleartext
// with prior knowledge, as an h2c model server (gRPC's kind) does; every
// answer names the protocol it came over in "proto". With -order-log FILE
// it appends "PID start METHOD URI" to FILE when a request arrives and
// "PID end METHOD URI" once it has been served, before the answer is
// written, so that a test can tell what reached which process in what
// order; status=CODE answers with that status. With size=, chunked=1
// sends the bytes without a Content-Length (chunked), and stall=DURATION
// sends the headers and the first half of the bytes, then nothing more
// for that long (or until the client goes away), as a replica wedged
// mid-response. With -poison S a request whose body contains S gets its
// connection reset, after sleep=, as a model server whose handler raises
// on one input does; each such delivery prints "fakemodel replica N:
// poison request, resetting" on stderr. With -curve K the service time
// (sleep= plus -service) is work on a capacity curve (curve.go): K
// requests at once each take it, more share K times the speed and lose
// -thrash more per K past K, so that the server serves best at K in
// flight and worse past it, with a known optimum to learn.
//
// With -batch-cost A,B it is a GPU-like model instead (batch.go): one
// forward pass at a time, a pass over n inputs taking A + n·B. POST /batch
// takes a JSON array of inputs and answers the array of their answers in
// one pass; any other path computes its body alone. Each input is a JSON
// object, and its answer carries its "id": {"id": ..., "batch": n,
// "replica": N}. With -poison S, an input containing S resets the
// connection, of its batch too.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	readyDelay := flag.Duration("ready-delay", 0, "answer /health with 503 for this long after start")
	listenDelay := flag.Duration("listen-delay", 0, "wait this long before listening")
	failStart := flag.Bool("fail-start", false, "exit 1 at once, as a broken model server would")
	ignoreTerm := flag.Bool("ignore-term", false, "ignore SIGTERM, so only SIGKILL stops it")
	service := flag.Duration("service", 0, "service time of every request (added to sleep=)")
	services := flag.String("services", "", "service times by replica, comma-separated: replica N takes the Nth, cycling (replaces -service), so that replicas of one instance differ")
	limit := flag.Int64("limit", 0, "drop connections past this many concurrent requests (0: no limit)")
	logRequests := flag.Bool("log-requests", false, "print a line per request on stdout, as an access log")
	healthStatus := flag.Int("health-status", http.StatusOK, "status /health answers once ready, e.g. 404 as a server without that path")
	h2c := flag.Bool("h2c", false, "also serve HTTP/2 over cleartext (prior knowledge), besides HTTP/1.1")
	h2cOnly := flag.Bool("h2c-only", false, "speak only HTTP/2 with prior knowledge (h2c), as gRPC servers do")
	orderLog := flag.String("order-log", "", "append a line to this file when each request arrives and when it has been served")
	poison := flag.String("poison", "", "reset the connection of a request whose body contains this, as a handler that raises does")
	curveK := flag.Int("curve", 0, "serve best at this many requests in flight, slower per request past it (0: every request takes its service time, however many)")
	thrash := flag.Float64("thrash", 0.25, "with -curve K: how much slower every request gets per K more in flight past K")
	batchCost := flag.String("batch-cost", "", "A,B: a GPU-like model, one pass at a time, a pass over n inputs taking A + n·B; POST /batch takes a JSON array of inputs (batch.go)")
	flag.Parse()
	var capacity *curve
	if *curveK > 0 {
		capacity = newCurve(*curveK, *thrash)
	}

	if *failStart {
		fmt.Fprintln(os.Stderr, "fakemodel: cannot load model (as asked by -fail-start)")
		os.Exit(1)
	}
	port := os.Getenv("PORT")
	replica, _ := strconv.Atoi(os.Getenv("MATTINGCTL_REPLICA"))
	if port == "" {
		fmt.Fprintln(os.Stderr, "fakemodel: PORT is not set")
		os.Exit(2)
	}
	if *services != "" {
		d, err := serviceOf(*services, replica)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fakemodel: -services:", err)
			os.Exit(2)
		}
		*service = d
	}
	time.Sleep(*listenDelay)
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakemodel:", err)
		os.Exit(1)
	}
	start := time.Now()
	var served, active atomic.Int64
	var unlisten sync.Once
	unlistened := make(chan struct{})

	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if time.Since(start) < *readyDelay {
			http.Error(w, "loading", http.StatusServiceUnavailable)
			return
		}
		if *healthStatus != http.StatusOK {
			http.Error(w, http.StatusText(*healthStatus), *healthStatus)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/ws", serveWebSocket)
	var dev *device
	if *batchCost != "" {
		fixed, each, err := parseBatchCost(*batchCost)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fakemodel: -batch-cost:", err)
			os.Exit(2)
		}
		dev = &device{fixed: fixed, each: each, replica: replica, poison: *poison}
	}
	order := newOrderLog(*orderLog)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if dev != nil && r.Method == http.MethodPost {
			if r.URL.Path == "/batch" {
				dev.serveBatch(w, r)
			} else {
				dev.serveOne(w, r)
			}
			return
		}
		order.add("start", r)
		defer order.add("end", r) // a handler's deferred calls run before the answer is flushed
		if n := active.Add(1); *limit > 0 && n > *limit {
			active.Add(-1)
			drop(w)
			return
		}
		defer active.Add(-1)
		var body []byte // kept only to look for the poison
		var n int64
		if *poison != "" {
			body, _ = io.ReadAll(r.Body)
			n = int64(len(body))
		} else {
			n, _ = io.Copy(io.Discard, r.Body)
		}
		q := r.URL.Query()
		sleep, _ := time.ParseDuration(q.Get("sleep"))
		sleep += *service
		if *poison != "" && strings.Contains(string(body), *poison) {
			fmt.Fprintf(os.Stderr, "fakemodel replica %d: poison request, resetting\n", replica)
			select {
			case <-time.After(sleep):
			case <-r.Context().Done():
			}
			drop(w)
			return
		}
		if q.Get("unlisten") != "" {
			unlisten.Do(func() { close(unlistened); ln.Close() })
			fmt.Fprintln(w, "not listening any more")
			return
		}
		if q.Get("crash") != "" {
			fmt.Fprintln(os.Stderr, "fakemodel: crashing as asked")
			os.Exit(3)
		}
		if chunks, _ := strconv.Atoi(q.Get("stream")); chunks > 0 {
			w.Header().Set("Content-Type", "text/plain")
			for i := 0; i < chunks; i++ {
				fmt.Fprintf(w, "chunk %d\n", i)
				w.(http.Flusher).Flush()
				time.Sleep(sleep)
			}
			return
		}
		if capacity != nil {
			capacity.serve(r.Context(), sleep)
		} else {
			time.Sleep(sleep)
		}
		served.Add(1)
		if *logRequests {
			// Unbuffered, as Python's logging writes: a pipe nobody reads
			// blocks this request.
			fmt.Fprintf(os.Stdout, "fakemodel replica %d: %s %s 200 %d bytes in\n", replica, r.Method, r.URL.RequestURI(), n)
		}
		if code, _ := strconv.Atoi(q.Get("status")); code >= 200 && code != http.StatusOK {
			http.Error(w, "status "+q.Get("status")+" as asked", code)
			return
		}
		if size := q.Get("size"); size != "" {
			stall, _ := time.ParseDuration(q.Get("stall"))
			writeSized(w, r, size, q.Get("chunked") != "", stall)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"replica":   replica,
			"pid":       os.Getpid(),
			"port":      port,
			"path":      r.URL.Path,
			"body_len":  n,
			"xff":       r.Header.Get("X-Forwarded-For"),
			"served":    served.Load(),
			"host":      r.Host,
			"method":    r.Method,
			"proto":     r.Proto,
			"uptime_ms": time.Since(start).Milliseconds(),
		})
	})
	srv := &http.Server{Handler: logPreface(mux, replica, *logRequests)}
	if *h2c || *h2cOnly {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(!*h2cOnly)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	sigs := make(chan os.Signal, 1)
	if *ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	}
	stopped := make(chan struct{})
	go func() {
		<-sigs
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		close(stopped)
	}()
	fmt.Fprintf(os.Stderr, "fakemodel replica %d listening on 127.0.0.1:%s\n", replica, port)
	err = srv.Serve(ln)
	select {
	case <-unlistened:
		<-stopped // live on, listening to nothing, until stopped
		return
	default:
	}
	if err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "fakemodel:", err)
		os.Exit(1)
	}
}

// writeSized answers n bytes, byte i being i%251, with a Content-Length
// unless chunked; with stall, it stops for that long halfway.
func writeSized(w http.ResponseWriter, r *http.Request, size string, chunked bool, stall time.Duration) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}} {
		if s, ok := strings.CutSuffix(size, u.suffix); ok {
			size, mult = s, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil || n < 0 {
		http.Error(w, "size: want bytes, or a number with KiB or MiB", http.StatusBadRequest)
		return
	}
	n *= mult
	w.Header().Set("Content-Type", "application/octet-stream")
	if !chunked {
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	}
	buf := make([]byte, 251*256)
	for i := range buf {
		buf[i] = byte(i % 251)
	}
	half := n / 2
	if stall == 0 {
		half = -1
	}
	for sent := int64(0); sent < n; {
		if sent == half {
			w.(http.Flusher).Flush()
			select {
			case <-time.After(stall):
			case <-r.Context().Done():
				return
			}
		}
		// Byte i is i%251 whatever the writes' sizes: each starts where
		// the pattern is.
		k := min(n-sent, int64(len(buf))-sent%251)
		if half > sent {
			k = min(k, half-sent)
		}
		if _, err := w.Write(buf[sent%251 : sent%251+k]); err != nil {
			return
		}
		sent += k
	}
}

// drop resets the request's connection without answering.
func drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close with RST, not FIN
	}
	conn.Close()
}

// logPreface wraps h: an HTTP/2 preface taken for an HTTP/1 request (PRI *,
// which a proxy must never forward) is logged with -log-requests, as any
// request is, and answered 400.
func logPreface(h http.Handler, replica int, logRequests bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "PRI" {
			h.ServeHTTP(w, r)
			return
		}
		if logRequests {
			fmt.Fprintf(os.Stdout, "fakemodel replica %d: %s %s %s 400\n", replica, r.Method, r.RequestURI, r.Proto)
		}
		http.Error(w, "an HTTP/2 preface is not an HTTP/1 request", http.StatusBadRequest)
	})
}

// orderLog appends a line per event to a file shared by every process; a
// nil one records nothing.
type orderLog struct{ f *os.File }

func newOrderLog(path string) *orderLog {
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakemodel:", err)
		os.Exit(2)
	}
	return &orderLog{f: f}
}

// add appends one line in one write, which O_APPEND keeps whole among
// other processes' lines.
func (o *orderLog) add(event string, r *http.Request) {
	if o == nil {
		return
	}
	_, _ = fmt.Fprintf(o.f, "%d %s %s %s\n", os.Getpid(), event, r.Method, r.URL.RequestURI())
}

// serviceOf returns replica's service time from list, "50ms,500ms":
// replica 1 takes the first, and replicas past the list's end start over.
func serviceOf(list string, replica int) (time.Duration, error) {
	times := strings.Split(list, ",")
	d, err := time.ParseDuration(strings.TrimSpace(times[(max(replica, 1)-1)%len(times)]))
	if err != nil {
		return 0, err
	}
	return d, nil
}
