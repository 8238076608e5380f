package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// needTool returns the path of tool, or skips t when it is not installed,
// unless MATTINGCTL_REQUIRE_E2E is set (as CI sets it), where a missing
// tool fails t.
func needTool(t *testing.T, tool, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("MATTINGCTL_REQUIRE_E2E") != "" {
			t.Fatalf("%s is not installed (apt-get install %s), and MATTINGCTL_REQUIRE_E2E is set", tool, pkg)
		}
		t.Skipf("%s is not installed (apt-get install %s)", tool, pkg)
	}
	return path
}

// h2cClient speaks HTTP/2 over cleartext with prior knowledge, as gRPC
// clients do.
func h2cClient() *http.Client {
	tr := &http.Transport{}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// TestHTTP2PrefaceNeverReachesAReplica: HTTP/2 clients, with prior
// knowledge (curl, Go) and by Upgrade (curl --http2), get 200 over HTTP/2,
// and the replicas see ordinary requests: never the preface as a
// "PRI *" request, and no retried or failed attempt.
func TestHTTP2PrefaceNeverReachesAReplica(t *testing.T) {
	t.Parallel()
	curl := needTool(t, "curl", "curl")
	in := start(t, 2, "--", fakemodel, "-log-requests")
	in.waitReady(2)

	sent := 0
	for _, mode := range []string{"--http2-prior-knowledge", "--http2"} {
		for i := 0; i < 3; i++ {
			out, err := exec.Command(curl, "-sS", mode, "-o", "/dev/null", "-w", "%{http_code} %{http_version}", in.url("/curl")).CombinedOutput()
			if err != nil || string(out) != "200 2" {
				t.Fatalf("curl %s: %v %q, want 200 over HTTP/2", mode, err, out)
			}
			sent++
		}
	}
	c := h2cClient()
	for i := 0; i < 5; i++ {
		resp, err := c.Get(in.url("/go"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
			t.Fatalf("Go h2c client: %s %s, want HTTP/2.0 200", resp.Proto, resp.Status)
		}
		sent++
	}
	// Every request reached a replica as itself, once.
	testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("%d requests in the replicas' logs", sent), func() bool {
		return strings.Count(in.stdout.String(), ": GET /") >= sent
	})
	if out := in.stdout.String(); strings.Contains(out, "PRI") || strings.Count(out, ": GET /") != sent {
		t.Fatalf("the replicas saw, for %d requests:\n%s", sent, out)
	}
	if st := in.status(); st.Retried != 0 || st.Failed != 0 {
		t.Errorf("retried %d, failed %d; want 0 and 0", st.Retried, st.Failed)
	}
}

// h2loadResult is what h2load reports.
type h2loadResult struct {
	total, succeeded, failed, errored, s2xx, s3xx, s4xx, s5xx int
	reqPerSec                                                 float64
	out                                                       string
}

var (
	h2loadRequests = regexp.MustCompile(`requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored`)
	h2loadStatus   = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
	h2loadRate     = regexp.MustCompile(`finished in [^,]+, ([\d.]+) req/s`)
)

// parseH2load reads h2load's summary.
func parseH2load(out string) (h2loadResult, error) {
	r := h2loadResult{out: out}
	m := h2loadRequests.FindStringSubmatch(out)
	s := h2loadStatus.FindStringSubmatch(out)
	if m == nil || s == nil {
		return r, fmt.Errorf("no requests: or status codes: line in h2load's output:\n%s", out)
	}
	n := func(v string) int { i, _ := strconv.Atoi(v); return i }
	r.total, r.succeeded, r.failed, r.errored = n(m[1]), n(m[2]), n(m[3]), n(m[4])
	r.s2xx, r.s3xx, r.s4xx, r.s5xx = n(s[1]), n(s[2]), n(s[3]), n(s[4])
	if rate := h2loadRate.FindStringSubmatch(out); rate != nil {
		r.reqPerSec, _ = strconv.ParseFloat(rate[1], 64)
	}
	return r, nil
}

// TestH2LoadThroughTheProxy: h2load's 2000 requests over 4 connections of
// 16 streams each are all answered 2xx, for each kind of replica.
func TestH2LoadThroughTheProxy(t *testing.T) {
	t.Parallel()
	h2load := needTool(t, "h2load", "nghttp2-client")
	for _, tc := range []struct {
		name      string
		upArgs    []string // mattingctl up's flags
		modelArgs []string // fakemodel's
	}{
		{name: "http1 replicas"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{}, tc.upArgs...), "--", fakemodel)
			in := start(t, 4, append(args, tc.modelArgs...)...)
			in.waitReady(4)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, h2load, "-n", "2000", "-c", "4", "-m", "16", in.url("/")).CombinedOutput()
			if err != nil {
				t.Fatalf("h2load: %v\n%s", err, out)
			}
			r, err := parseH2load(string(out))
			if err != nil {
				t.Fatal(err)
			}
			if r.total != 2000 || r.succeeded != 2000 || r.s2xx != 2000 {
				t.Fatalf("h2load: %d of %d succeeded, %d 2xx, %d 4xx, %d 5xx; want all 2000 answered 2xx\n%s",
					r.succeeded, r.total, r.s2xx, r.s4xx, r.s5xx, out)
			}
			if st := in.status(); st.Retried != 0 || st.Failed != 0 || st.Rejected != 0 {
				t.Errorf("retried %d, failed %d, rejected %d; want none", st.Retried, st.Failed, st.Rejected)
			}
			t.Logf("h2load through the proxy: %.0f req/s", r.reqPerSec)
		})
	}
}

// tlsClient trusts the certificates in pool and offers h2 and http/1.1,
// on a connection of its own.
func tlsClient(pool *x509.CertPool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, NextProtos: []string{"h2", "http/1.1"}},
		ForceAttemptHTTP2: true,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// servedSerial opens a new TLS connection to addr and returns the serial
// number of the certificate it is served.
func servedSerial(addr string) (int64, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

// TestHTTPSNegotiatesH2AndSwapsCertificates: with --tls-cert and --tls-key
// the proxy port is HTTPS and ALPN picks h2. A certificate swapped on disk
// is served to new connections after SIGHUP, and after `mattingctl
// restart`, while a stream opened before the swap completes; a broken pair
// is refused at restart and the previous certificate is kept.
func TestHTTPSNegotiatesH2AndSwapsCertificates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := testutil.WriteSelfSigned(t, dir, "first", 1)
	in := start(t, 1, "--tls-cert", certFile, "--tls-key", keyFile, "--", fakemodel)
	in.waitReady(1)
	addr := "127.0.0.1:" + strconv.Itoa(in.port)
	url := "https://" + addr

	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	c := tlsClient(pool)
	resp, err := c.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS.NegotiatedProtocol != "h2" || resp.ProtoMajor != 2 {
		t.Fatalf("over TLS: %s %s, ALPN %q; want 200 over h2", resp.Proto, resp.Status, resp.TLS.NegotiatedProtocol)
	}

	// A slow request on that HTTP/2 connection, open across the swap.
	type result struct {
		resp *http.Response
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := c.Get(url + "/?sleep=3s")
		if err != nil {
			slow <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- result{resp, string(b), err}
	}()
	in.waitInflight(1)

	testutil.WriteSelfSigned(t, dir, "second", 2)
	if err := in.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the second certificate on new connections after SIGHUP", func() bool {
		serial, err := servedSerial(addr)
		return err == nil && serial == 2
	})
	r := <-slow
	if r.err != nil {
		t.Fatalf("the stream opened before the swap: %v", r.err)
	}
	if r.resp.StatusCode != http.StatusOK || r.resp.ProtoMajor != 2 || r.resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 1 {
		t.Fatalf("the stream opened before the swap: %s %s, certificate serial %d; want 200 over HTTP/2 on the first certificate (%s)",
			r.resp.Proto, r.resp.Status, r.resp.TLS.PeerCertificates[0].SerialNumber, r.body)
	}
	testutil.WriteSelfSigned(t, dir, "third", 3)
	if out, errOut, code := in.ctl("restart"); code != 0 {
		t.Fatalf("restart: exit %d\n%s%s", code, out, errOut)
	}
	if serial, err := servedSerial(addr); err != nil || serial != 3 {
		t.Fatalf("after mattingctl restart: serial %d (%v), want 3", serial, err)
	}

	if err := os.WriteFile(keyFile, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := in.ctl("restart")
	want := "mattingctl: TLS certificate not re-read, the previous one is still served: --tls-key " + keyFile + ": no PEM PRIVATE KEY block in it\n"
	if code == 0 || errOut != want {
		t.Fatalf("restart with a broken key: exit %d, stderr %q; want exit 1 and %q", code, errOut, want)
	}
	if serial, err := servedSerial(addr); err != nil || serial != 3 {
		t.Fatalf("after a failed re-read: serial %d (%v), want the previous certificate's, 3", serial, err)
	}
	if !strings.Contains(in.stderr.String(), "TLS certificate not re-read") {
		t.Errorf("the failed re-read is not in the log:\n%s", in.stderr.String())
	}
}

// TestTLSFlagErrors: a bad --tls-cert/--tls-key is one line naming the
// flag and the file, with nothing started.
func TestTLSFlagErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := testutil.WriteSelfSigned(t, dir, "one", 1)
	other := filepath.Join(dir, "other")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	_, otherKey := testutil.WriteSelfSigned(t, other, "two", 2)
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"cert alone", []string{"--tls-cert", certFile}, "--tls-cert needs --tls-key: give both files, or neither"},
		{"missing cert", []string{"--tls-cert", missing, "--tls-key", keyFile}, "--tls-cert " + missing + ": no such file or directory"},
		{"mismatched", []string{"--tls-cert", certFile, "--tls-key", otherKey}, "--tls-key " + otherKey + " does not match the certificate in --tls-cert " + certFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := testutil.FreePorts(t, 3)
			args := append([]string{"up", "--host", "127.0.0.1", "-p", strconv.Itoa(port)}, tc.args...)
			_, stderr, code := run(t, t.TempDir(), append(args, "--", fakemodel)...)
			if code == 0 || stderr != "mattingctl: "+tc.want+"\n" {
				t.Errorf("exit %d, stderr:\n%s\nwant the one line %q", code, stderr, tc.want)
			}
			if !portFree(port) || !portFree(port+1) {
				t.Errorf("something listens on the proxy or replica port after the refusal")
			}
		})
	}
}
