package balancer

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// uploads returns how many uploads addr has under way.
func (c *clientShares) uploads(addr string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.m[addr]; s != nil {
		return s.uploads
	}
	return 0
}

func TestClientShares(t *testing.T) {
	c := newClientShares(2, 100)
	a1, err1 := c.begin("192.0.2.1")
	a2, err2 := c.begin("192.0.2.1")
	if err1 != nil || err2 != nil {
		t.Fatalf("the first two uploads: %v, %v", err1, err2)
	}
	if _, err := c.begin("192.0.2.1"); !errors.Is(err, errClientUploads) {
		t.Errorf("a third at once: %v, want errClientUploads", err)
	}
	b1, err := c.begin("192.0.2.2")
	if err != nil {
		t.Errorf("another address: %v", err)
	}
	// A body received no longer counts as an upload, until it is done.
	c.received(a1)
	a3, err := c.begin("192.0.2.1")
	if err != nil {
		t.Errorf("once one was received: %v", err)
	}
	// Bytes: up to the cap, not one more, per address.
	if !c.reserve(a1, 60) || !c.reserve(a3, 40) {
		t.Error("100 bytes refused under a cap of 100")
	}
	if c.reserve(a2, 1) {
		t.Error("a byte past the cap reserved")
	}
	if !c.reserve(b1, 100) {
		t.Error("another address's bytes refused")
	}
	a1.bytes.Add(-60)
	if !c.reserve(a2, 60) {
		t.Error("60 bytes refused once 60 were given back")
	}
	for _, s := range []*clientShare{a2, a3} {
		c.received(s)
	}
	for _, s := range []*clientShare{a1, a2, a3, b1} {
		c.end(s)
	}
	if len(c.m) != 0 {
		t.Errorf("addresses still kept with no body: %v", c.m)
	}
	if !newClientShares(0, 0).reserve(&clientShare{}, 1<<40) {
		t.Error("no cap refused bytes")
	}
}

// clientFrom returns a client whose connections come from the loopback
// address ip: Linux routes all of 127.0.0.0/8 to lo.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 15 * time.Second}
}

// slowUpload starts a POST from ip of a body that declares n bytes and
// sends first of them, and holds the rest until send is called.
type slowUpload struct {
	conn *net.TCPConn
}

func startSlowUpload(t *testing.T, srv *httptest.Server, ip string, n, first int) *slowUpload {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	u := &slowUpload{conn: c.(*net.TCPConn)}
	if _, err := io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(n)+"\r\n\r\n"+strings.Repeat("s", first)); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestClientUploadsCap: an address sending --max-client-uploads bodies
// at once gets 429 with Retry-After for one more, before its body is read;
// another address is served; once one of its uploads ends, it may send
// another.
func TestClientUploadsCap(t *testing.T) {
	be := newTestBackend(t, 1, echo)
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxClientUploads = 2 }), be.Backend)
	ups := []*slowUpload{startSlowUpload(t, srv, "127.0.0.1", 100, 1), startSlowUpload(t, srv, "127.0.0.1", 100, 1)}
	testutil.WaitFor(t, settle, "2 uploads under way", func() bool { return bal.clients.uploads("127.0.0.1") == 2 })

	resp, err := clientFrom("127.0.0.1").Post(srv.URL, "text/plain", strings.NewReader("third"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "too many uploads at once from your address") {
		t.Errorf("a third upload from the address: %d %q, Retry-After %q; want 429 with Retry-After", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if code, _ := post(t, clientFrom("127.0.0.2"), srv.URL, "other"); code != http.StatusOK {
		t.Errorf("another address: %d, want 200", code)
	}
	if _, err := io.WriteString(ups[0].conn, strings.Repeat("s", 99)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, settle, "1 upload under way", func() bool { return bal.clients.uploads("127.0.0.1") == 1 })
	if code, _ := post(t, clientFrom("127.0.0.1"), srv.URL, "now"); code != http.StatusOK {
		t.Errorf("once an upload ended: %d, want 200", code)
	}
	if st := bal.Stats(); st.Limited != 1 {
		t.Errorf("Limited = %d, want 1", st.Limited)
	}
}

// TestClientBufferCap: an address whose bodies hold --max-client-buffer
// gets 429 for a body that would pass it, partway; another address's body
// of the same size is served.
func TestClientBufferCap(t *testing.T) {
	be := newTestBackend(t, 1, echo)
	const share = firstChunk + chunkSize // a body's first two chunks
	bal, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MaxClientBuffer = new(int64(share)) }), be.Backend)
	// Holds its first two chunks: the whole share.
	startSlowUpload(t, srv, "127.0.0.1", 1<<20, firstChunk+1)
	testutil.WaitFor(t, settle, "the share held", func() bool { return bal.bufs.mem.Load() == share })

	resp, err := clientFrom("127.0.0.1").Post(srv.URL, "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "holds too much") {
		t.Errorf("one more byte from the address: %d %q; want 429 with Retry-After", resp.StatusCode, body)
	}
	payload := strings.Repeat("o", share)
	resp, err = clientFrom("127.0.0.2").Post(srv.URL, "text/plain", strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	var e echoed
	if err := decodeJSON(resp, &e); err != nil || resp.StatusCode != http.StatusOK || len(e.Body) != share {
		t.Errorf("another address's body of the whole share: %d, %d bytes, %v", resp.StatusCode, len(e.Body), err)
	}
	resp.Body.Close()
}

// TestMinUploadRate: past the grace, a body must arrive at the minimum
// rate on average: one sent at twice the rate is served, one at half of
// it is cut with 408, within a second of when its bytes ran out.
func TestMinUploadRate(t *testing.T) {
	be := newTestBackend(t, 1, echo)
	const rate, grace = 2000, 300 * time.Millisecond
	_, srv := newTestBalancer(t, testOptions(func(o *Options) { o.MinUploadRate, o.UploadGrace = rate, grace }), be.Backend)
	for _, tt := range []struct {
		name   string
		factor float64 // of the minimum rate
		want   int
	}{
		{"twice the rate", 2, http.StatusOK},
		{"half the rate", 0.5, http.StatusRequestTimeout},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const total, step = 3000, 100
			pr, pw := io.Pipe()
			go func() {
				defer pw.Close()
				every := time.Duration(float64(time.Second) * step / (rate * tt.factor))
				for sent := 0; sent < total; sent += step {
					if _, err := pw.Write(bytes.Repeat([]byte("r"), step)); err != nil {
						return
					}
					time.Sleep(every)
				}
			}()
			req, _ := http.NewRequest(http.MethodPost, srv.URL, pr)
			req.ContentLength = total
			start := time.Now()
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.want)
			}
			if tt.want == http.StatusRequestTimeout {
				// At half the rate, the bytes sent by t buy grace+t/2.
				if took := time.Since(start); took < 2*grace || took > 2*grace+time.Second {
					t.Errorf("cut after %s, want about %s", took, 2*grace)
				}
				if !strings.Contains(string(body), "slower than 2000 bytes a second") {
					t.Errorf("body %q does not say why", body)
				}
			}
		})
	}
}
