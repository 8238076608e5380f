package balancer

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// BenchmarkProxyOriginalBody proxies the original load test's ~220 KB body to an instant
// backend over real loopback connections; B/op shows whether body buffers
// are reused.
func BenchmarkProxyOriginalBody(b *testing.B) {
	be := newBenchBackend(b)
	bal := New(testOptions(func(o *Options) { o.MaxInflight = 8; o.Queue = 1024 }))
	bal.Add(be)
	srv := newBenchServer(b, bal)
	body := bytes.Repeat([]byte("x"), 220<<10)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(srv, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
