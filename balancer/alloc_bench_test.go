package balancer

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
)

// BenchmarkProxy1KB proxies one 1 KB POST at a time over a kept-alive
// client connection to an instant backend. The client and the backend
// speak HTTP/1.1 by hand over loopback and allocate next to nothing, so
// allocs/op and B/op are the proxy's own per request.
//
//	go test -run '^$' -bench Proxy1KB -benchmem ./balancer/
func BenchmarkProxy1KB(b *testing.B) { benchmarkProxyRaw(b, 1<<10) }

// BenchmarkProxy225KB is BenchmarkProxy1KB with the original load test's
// request size.
func BenchmarkProxy225KB(b *testing.B) { benchmarkProxyRaw(b, 225<<10) }

func benchmarkProxyRaw(b *testing.B, size int) {
	be := NewBackend(1, "replica-1", rawBackend(b))
	bal := New(testOptions(func(o *Options) { o.MaxInflight = 8; o.Queue = 1024 }))
	bal.Add(be)
	srv := newBenchServer(b, bal)
	conn, err := net.Dial("tcp", srv[len("http://"):])
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	body := bytes.Repeat([]byte("x"), size)
	req := append(fmt.Appendf(nil, "POST /api/matting_base64 HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", size), body...)
	br := bufio.NewReaderSize(conn, 64<<10)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		code, err := readRawResponse(br)
		if err != nil {
			b.Fatal(err)
		}
		if code != "200" {
			b.Fatalf("status %s", code)
		}
	}
}

// rawBackend serves every request on its connections with a fixed small
// JSON answer, reading by hand; it returns its address.
func rawBackend(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"result\":\"ok\"}")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReaderSize(c, 64<<10)
				for {
					n, err := readRawHead(br)
					if err != nil {
						return
					}
					if _, err := br.Discard(n); err != nil {
						return
					}
					if _, err := c.Write(answer); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// readRawHead reads a request's or response's header lines and returns
// its Content-Length (0 when it has none).
func readRawHead(br *bufio.Reader) (int, error) {
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			return n, nil
		}
		const key = "content-length:"
		if len(line) > len(key) && bytes.EqualFold(line[:len(key)], []byte(key)) {
			n = 0
			for _, c := range bytes.TrimSpace(line[len(key):]) {
				n = n*10 + int(c-'0')
			}
		}
	}
}

// readRawResponse reads one response and returns its status code.
func readRawResponse(br *bufio.Reader) (string, error) {
	status, err := br.ReadSlice('\n')
	if err != nil {
		return "", err
	}
	if len(status) < 12 {
		return "", fmt.Errorf("status line %q", status)
	}
	code := string(status[9:12])
	n, err := readRawHead(br)
	if err != nil {
		return "", err
	}
	_, err = io.CopyN(io.Discard, br, int64(n))
	return code, err
}
