package balancer

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
)

// TestRelayDropsHopByHopFields: neither way do the hop-by-hop fields
// cross the proxy, those a Connection field names included; Te: trailers
// does, as does everything else; an unparsable query is cleaned as
// ReverseProxy cleans it.
func TestRelayDropsHopByHopFields(t *testing.T) {
	seen := make(chan *http.Request, 1)
	be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		seen <- r
		w.Header().Set("Connection", "X-Secret")
		w.Header().Set("X-Secret", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Kept", "yes")
		fmt.Fprint(w, "ok")
	})
	_, srv := newTestBalancer(t, testOptions(nil), be.Backend)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /q?x=1&bad=a;b HTTP/1.1\r\nHost: model\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\n"+
		"Keep-Alive: timeout=5\r\nProxy-Authorization: secret\r\nTe: trailers, deflate\r\nForwarded: for=10.9.9.9\r\n"+
		"X-Forwarded-Proto: https\r\nX-Custom: kept\r\nUser-Agent: test/1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	r := <-seen
	for _, k := range []string{"X-Drop", "Keep-Alive", "Proxy-Authorization", "Forwarded", "Connection"} {
		if v, ok := r.Header[k]; ok {
			t.Errorf("the replica got %s: %q", k, v)
		}
	}
	if r.Header.Get("Te") != "trailers" || r.Header.Get("X-Custom") != "kept" || r.Header.Get("User-Agent") != "test/1" ||
		r.Header.Get("X-Forwarded-Proto") != "http" || r.Host != "model" {
		t.Errorf("the replica got Te %q, X-Custom %q, User-Agent %q, X-Forwarded-Proto %q, Host %q",
			r.Header.Get("Te"), r.Header.Get("X-Custom"), r.Header.Get("User-Agent"), r.Header.Get("X-Forwarded-Proto"), r.Host)
	}
	if r.URL.RawQuery != "x=1" {
		t.Errorf("the replica got the query %q, want x=1", r.URL.RawQuery)
	}
	for _, k := range []string{"X-Secret", "Keep-Alive"} {
		if v, ok := resp.Header[k]; ok {
			t.Errorf("the client got %s: %q", k, v)
		}
	}
	if string(body) != "ok" || resp.Header.Get("X-Kept") != "yes" {
		t.Errorf("the client got %q, X-Kept %q", body, resp.Header.Get("X-Kept"))
	}
}

// TestRelayInterimAndTrailers: a 103 reaches the client before the
// response, and trailers after its body.
func TestRelayInterimAndTrailers(t *testing.T) {
	be := newTestBackend(t, 1, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Trailer", "X-Checksum")
		fmt.Fprint(w, "body")
		w.Header().Set("X-Checksum", "abc")
	})
	_, srv := newTestBalancer(t, testOptions(nil), be.Backend)
	var interim []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		interim = append(interim, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", srv.URL+"/", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "body" {
		t.Fatalf("body %q, %v", body, err)
	}
	if strings.Join(interim, ",") != "103 </a.css>; rel=preload" {
		t.Errorf("interim responses %q, want the 103 with its Link", interim)
	}
	if got := resp.Trailer.Get("X-Checksum"); got != "abc" {
		t.Errorf("trailer X-Checksum %q, want abc", got)
	}
}
