package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestH2CReplicas: with --upstream-protocol h2c, replicas that speak only
// h2c are checked for readiness in h2c and serve HTTP/1.1 and HTTP/2
// clients alike: every one of h2load's 2000 requests, multiplexed 16 to a
// connection, is answered 200. h2load and curl come from Debian's
// nghttp2-client and curl; without them those parts are skipped, unless
// MATTINGCTL_REQUIRE_E2E is set.
func TestH2CReplicas(t *testing.T) {
	t.Parallel()
	in := start(t, 2, "--upstream-protocol", "h2c", "--health", "/health", "--", fakemodel, "-h2c-only")
	in.waitReady(2)

	// An HTTP/1.1 client, translated.
	resp, err := client.Get(in.url("/one"))
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Proto string }
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || got.Proto != "HTTP/2.0" {
		t.Fatalf("HTTP/1.1 through h2c replicas: %d %+v %v", resp.StatusCode, got, err)
	}

	need := func(tool, pkg string) bool {
		if _, err := exec.LookPath(tool); err != nil {
			msg := tool + " is missing (apt-get install " + pkg + ")"
			if os.Getenv("MATTINGCTL_REQUIRE_E2E") != "" {
				t.Fatal(msg)
			}
			t.Log(msg + ": skipping that part")
			return false
		}
		return true
	}
	if need("curl", "curl") {
		out, err := exec.Command("curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", in.url("/curl")).CombinedOutput()
		if err != nil || string(out) != "2 200" {
			t.Errorf("curl --http2-prior-knowledge: %v: %s", err, out)
		}
	}
	if need("h2load", "nghttp2-client") {
		out, err := exec.Command("h2load", "-n", "2000", "-c", "4", "-m", "16", in.url("/h2load")).CombinedOutput()
		if err != nil {
			t.Fatalf("h2load: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`).FindStringSubmatch(string(out))
		if m == nil || m[1] != "2000" {
			t.Errorf("h2load through h2c replicas, want 2000 2xx:\n%s", out)
		}
		if !strings.Contains(string(out), "2000 succeeded") {
			t.Errorf("h2load:\n%s", out)
		}
		t.Logf("%s", regexp.MustCompile(`(?m)^finished in.*$`).FindString(string(out)))
	}
	var served uint64
	for _, r := range in.status().Replicas {
		served += r.Requests
		if r.Errors != 0 {
			t.Errorf("%s: %d errors", r.Name, r.Errors)
		}
	}
	if st := in.status(); st.Failed != 0 || st.Retried != 0 {
		t.Errorf("failed %d, retried %d", st.Failed, st.Retried)
	}
	t.Logf("%d requests served", served)
}
