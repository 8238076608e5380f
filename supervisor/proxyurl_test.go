package supervisor

import (
	"os"
	"testing"
)

// TestProxyURL: an address of its own is the URL's host; every interface
// names this machine, and says so.
func TestProxyURL(t *testing.T) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "127.0.0.1"
	}
	tests := []struct {
		tls  bool
		host string
		want string
		all  bool
	}{
		{false, "127.0.0.1", "http://127.0.0.1:9110/", false},
		{true, "127.0.0.1", "https://127.0.0.1:9110/", false},
		{false, "::1", "http://[::1]:9110/", false},
		{false, "gpu-box.lan", "http://gpu-box.lan:9110/", false},
		{false, "", "http://" + host + ":9110/", true},
		{false, "0.0.0.0", "http://" + host + ":9110/", true},
		{true, "::", "https://" + host + ":9110/", true},
	}
	for _, tt := range tests {
		url, all := proxyURL(tt.tls, tt.host, 9110)
		if url != tt.want || all != tt.all {
			t.Errorf("proxyURL(%v, %q) = %q, %v; want %q, %v", tt.tls, tt.host, url, all, tt.want, tt.all)
		}
	}
}
